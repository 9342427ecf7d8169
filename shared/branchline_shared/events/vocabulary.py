"""Closed value sets of the event catalogue (docs/rules.md), one ``StrEnum`` each.

A value outside a set is refused at the boundary, so every consumer can rely on it (the quality
measures of D-12 count by these values). Adding a member is a compatible change; renaming or
removing one is a breaking change and needs a new schema version (ADR-0004).
"""

from __future__ import annotations

from enum import StrEnum


class ClientType(StrEnum):
    """D-09 client type."""

    INDIVIDUAL = "individual"
    CORPORATE = "corporate"
    INSTITUTIONAL = "institutional"
    CROSS_BORDER = "cross_border"


class ConsentPurpose(StrEnum):
    """D-04: the stated purposes a client can consent to (each granted or withdrawn alone)."""

    SERVICE = "service"
    """Serving the client's own requests and contracts (the default purpose of personal data)."""
    MARKETING = "marketing"
    DATA_SHARING = "data_sharing"
    """Sharing with third parties (group companies, partners)."""
    PROFILING = "profiling"
    """Automated analysis: classification, product targeting."""
    RESEARCH = "research"
    """Statistics and service-quality research."""


class PersonalField(StrEnum):
    """D-04: the personal fields ``client.personal_data_recorded`` may carry."""

    NAME = "name"
    ID_NUMBER = "id_number"
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    DATE_OF_BIRTH = "date_of_birth"
    NATIONALITY = "nationality"
    OCCUPATION = "occupation"
    EMPLOYER = "employer"
    ANNUAL_INCOME = "annual_income"


class IdentityMethod(StrEnum):
    """D-03: how the identity was verified."""

    NETWORKED_ID_CHECK = "networked_id_check"
    IN_PERSON = "in_person"
    VIDEO = "video"


class DocumentType(StrEnum):
    """D-03: the document the identity was verified against."""

    RESIDENT_ID = "resident_id"
    PASSPORT = "passport"
    BUSINESS_LICENSE = "business_license"
    OTHER = "other"


class _Ranked(StrEnum):
    """A level ``X1``..``X5`` whose number orders it."""

    @property
    def rank(self) -> int:
        """1..5: the number of the level."""
        return int(self.value[1:])


class RiskTolerance(_Ranked):
    """D-05: the client's assessed risk tolerance, C1 most conservative."""

    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"


class ProductRisk(_Ranked):
    """D-05: a product's risk level, R1 lowest. Sellable when ``R.rank <= C.rank``."""

    R1 = "R1"
    R2 = "R2"
    R3 = "R3"
    R4 = "R4"
    R5 = "R5"


class ProductStatus(StrEnum):
    """D-13: a product's status on the shelf (derived from its events, never submitted)."""

    ON_SALE = "on_sale"
    SUSPENDED = "suspended"
    WITHDRAWN = "withdrawn"


class ScreeningResult(StrEnum):
    """D-03: the result of an AML / sanctions screening; ``hit`` and ``pending`` block account
    opening and sales until a later ``clear``."""

    CLEAR = "clear"
    HIT = "hit"
    PENDING = "pending"


class DisclosureItem(StrEnum):
    """D-05: the items an itemised risk disclosure covers (all four are required)."""

    RISKS = "risks"
    RETURNS = "returns"
    FEES = "fees"
    HOLDING_PERIOD = "holding_period"


class VisitCategory(StrEnum):
    """D-01 step 2: the confirmed need of a visit."""

    ACCOUNT = "account"
    DEPOSIT = "deposit"
    LOAN = "loan"
    WEALTH_PRODUCT = "wealth_product"
    INSURANCE = "insurance"
    PAYMENT = "payment"
    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    OTHER = "other"


class VisitOutcome(StrEnum):
    """D-01 step 7: how a visit ended."""

    NORMAL = "normal"
    LEFT_EARLY = "left_early"
    REFERRED = "referred"


class ComplaintSeverity(StrEnum):
    """D-07: major = important or urgent."""

    GENERAL = "general"
    IMPORTANT = "important"
    URGENT = "urgent"

    @property
    def is_major(self) -> bool:
        """D-07: a major complaint is handled within 48 hours (default profile)."""
        return self is not ComplaintSeverity.GENERAL


class CompensationKind(StrEnum):
    """D-07: what a resolution may offer."""

    MONEY = "money"
    VOUCHER = "voucher"
    POINTS = "points"
    OTHER = "other"


class SurveyChannel(StrEnum):
    """D-01b: how a satisfaction survey was answered."""

    PHONE = "phone"
    SMS = "sms"
    APP = "app"
    ONLINE = "online"
    IN_PERSON = "in_person"


class FollowupKind(StrEnum):
    """What a follow-up task is for (the followup service's task kinds); the comment names the
    rule that makes it due."""

    SATISFACTION_SURVEY = "satisfaction_survey"  # D-01b
    APPOINTMENT_PREPARATION = "appointment_preparation"  # D-02
    CONSULTATION_RESPONSE = "consultation_response"  # D-06 (first answer)
    CONSULTATION_PROMISE = "consultation_promise"  # D-06 (the promised answer)
    COMPLAINT_RESPONSE = "complaint_response"  # D-07 (respond within 24 h)
    COMPLAINT_HANDLING = "complaint_handling"  # D-07 (major: handle within 48 h)
    COMPLAINT_DECISION = "complaint_decision"  # D-07 (cn_regulator profile)
    COMPLAINT_SUMMARY_RESOLUTION = "complaint_summary_resolution"  # D-07 (uk_fca_disp)
    COMPLAINT_FINAL_RESPONSE = "complaint_final_response"  # D-07 (uk_fca_disp)
    COMPLAINT_FOLLOW_UP = "complaint_follow_up"  # D-07 (after the resolution)
    REVISIT = "revisit"  # D-08
    WIN_BACK = "win_back"  # D-08
    PRODUCT_REVIEW = "product_review"  # D-08
    SUITABILITY_REVIEW = "suitability_review"  # D-15 (holdings that no longer fit)
    KYC_REFRESH = "kyc_refresh"  # D-03 (periodic due-diligence refresh)
    GIFT_ESCALATION = "gift_escalation"  # D-16 (an accepted gift, to the supervisor)
    DATA_ACCESS_REQUEST = "data_access_request"  # D-04 (answer a client's access request)
    FEEDBACK_RESPONSE = "feedback_response"  # D-07 (every feedback answered within 24 h)
    COMPLAINT_PROGRESS_PROMISE = "complaint_progress_promise"  # D-17 (the promised update)
    CORRECTIVE_ACTION = "corrective_action"  # D-17 (tracked to done)


class FollowupOutcome(StrEnum):
    """How a follow-up task ended, as the RM records it: a closed code, so no free text (and no
    personal detail written into it) reaches the stores in clear; the RM's words go into the
    sealed ``note``."""

    COMPLETED = "completed"
    CONTACTED = "contacted"
    NOT_REACHED = "not_reached"
    RESOLVED = "resolved"
    DECLINED = "declined"
    RESCHEDULED = "rescheduled"
    REFERRED = "referred"
    OTHER = "other"


class JurisdictionProfile(StrEnum):
    """The jurisdiction profiles of the complaint clocks shipped with the product (D-07)."""

    DEFAULT = "default"
    CN_REGULATOR = "cn_regulator"
    UK_FCA_DISP = "uk_fca_disp"
    US_BROKER = "us_broker"


class LifecycleStage(StrEnum):
    """D-09 lifecycle stage (derived from a client's history, never submitted)."""

    PROSPECT = "prospect"
    NEW = "new"
    MATURE = "mature"
    HIGH_NET_WORTH = "high_net_worth"
    CHURNED = "churned"


class RiskLevel(StrEnum):
    """D-09 risk level (derived from the C1..C5 assessment, never submitted)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


class SatisfactionDimension(StrEnum):
    """D-10: the five dimensions a satisfaction survey scores 0-100."""

    ATTITUDE = "attitude"
    PROFESSIONALISM = "professionalism"
    RESPONSE_SPEED = "response_speed"
    RISK_MANAGEMENT = "risk_management"
    CONVENIENCE = "convenience"


# --- the service loop (D-07, D-09, D-11, D-17) ---------------------------------------------------


class AccountClosureReason(StrEnum):
    """D-09: why the relationship ended (``client.account_closed``)."""

    CLIENT_REQUEST = "client_request"
    RELOCATION = "relocation"
    DISSATISFACTION = "dissatisfaction"
    DORMANT = "dormant"
    DECEASED = "deceased"
    INSTITUTION_DECISION = "institution_decision"
    REGULATORY = "regulatory"
    OTHER = "other"


class AccountReopeningReason(StrEnum):
    """D-09: why a closed relationship started again (``client.account_reopened``)."""

    CLIENT_REQUEST = "client_request"
    CLOSED_IN_ERROR = "closed_in_error"
    OTHER = "other"


class RootCause(StrEnum):
    """D-17: the root cause a complaint or a piece of feedback is classified by."""

    PRODUCT = "product"
    PROCESS = "process"
    STAFF = "staff"
    SYSTEM = "system"
    THIRD_PARTY = "third_party"
    OTHER = "other"


class ComplaintProblem(StrEnum):
    """D-17: what a complaint is about, in the product's own words; each jurisdiction profile
    maps it to its regulator's problem code (e.g. FINRA Rule 4530 problem codes)."""

    SERVICE_QUALITY = "service_quality"
    WAITING_TIME = "waiting_time"
    FEES_CHARGES = "fees_charges"
    MISREPRESENTATION = "misrepresentation"
    UNSUITABLE_ADVICE = "unsuitable_advice"
    UNAUTHORIZED_TRANSACTION = "unauthorized_transaction"
    ACCOUNT_ADMINISTRATION = "account_administration"
    TRANSFER_OF_FUNDS = "transfer_of_funds"
    PERSONAL_DATA = "personal_data"
    PRODUCT_PERFORMANCE = "product_performance"
    SYSTEM_FAILURE = "system_failure"
    OTHER = "other"


class ProductCategory(StrEnum):
    """D-13: a product's category (each jurisdiction profile maps it to its regulator's product
    code, e.g. FINRA Rule 4530 product codes); staff qualify per category (D-14)."""

    FUND = "fund"
    WEALTH_MANAGEMENT = "wealth_management"
    INSURANCE = "insurance"
    DEPOSIT = "deposit"
    LOAN = "loan"
    BOND = "bond"
    OTHER = "other"


class CorrectiveActionKind(StrEnum):
    """D-17: what a corrective action changes."""

    TRAINING = "training"
    PROCESS_CHANGE = "process_change"
    SYSTEM_FIX = "system_fix"
    PRODUCT_CHANGE = "product_change"
    STAFF_ACTION = "staff_action"
    THIRD_PARTY_ESCALATION = "third_party_escalation"
    OTHER = "other"


class RenegotiationReason(StrEnum):
    """D-17: why a promise to a client cannot be kept by its deadline."""

    AWAITING_THIRD_PARTY = "awaiting_third_party"
    FURTHER_INVESTIGATION = "further_investigation"
    CLIENT_REQUEST = "client_request"
    STAFF_UNAVAILABLE = "staff_unavailable"
    SYSTEM_OUTAGE = "system_outage"
    OTHER = "other"


class FeedbackKind(StrEnum):
    """D-07: feedback other than a survey or a complaint (``feedback.received``)."""

    SUGGESTION = "suggestion"
    PRAISE = "praise"
    CONCERN = "concern"
    REQUEST = "request"
    OTHER = "other"


class LegalHoldReason(StrEnum):
    """D-11: why a client's records are put under legal hold (never pruned while held)."""

    LITIGATION = "litigation"
    REGULATORY_INVESTIGATION = "regulatory_investigation"
    LAW_ENFORCEMENT_REQUEST = "law_enforcement_request"
    INTERNAL_INVESTIGATION = "internal_investigation"
    OTHER = "other"


class LegalHoldReleaseReason(StrEnum):
    """D-11: why a legal hold was lifted."""

    MATTER_CLOSED = "matter_closed"
    AUTHORITY_RELEASED = "authority_released"
    PLACED_IN_ERROR = "placed_in_error"
    OTHER = "other"
