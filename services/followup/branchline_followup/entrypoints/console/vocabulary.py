"""The names the followup console shows for codes of closed value sets, in English source
form (marked for extraction, translated where shown), and each task kind's one-line reason."""

from __future__ import annotations

from branchline_shared.console.i18n import N_

TASK_KINDS = {
    "satisfaction_survey": N_("Satisfaction survey"),
    "appointment_preparation": N_("Appointment preparation"),
    "consultation_response": N_("Consultation response"),
    "consultation_promise": N_("Promised answer"),
    "complaint_response": N_("Complaint response"),
    "complaint_handling": N_("Major complaint handling"),
    "complaint_decision": N_("Complaint decision"),
    "complaint_summary_resolution": N_("Complaint summary resolution"),
    "complaint_final_response": N_("Complaint final response"),
    "complaint_follow_up": N_("Complaint follow-up"),
    "revisit": N_("Revisit"),
    "win_back": N_("Win-back contact"),
    "product_review": N_("Product review"),
    "suitability_review": N_("Suitability review"),
    "kyc_refresh": N_("Due diligence refresh"),
    "gift_escalation": N_("Gift escalation"),
    "data_access_request": N_("Personal data access request"),
    "feedback_response": N_("Feedback response"),
    "complaint_progress_promise": N_("Promised complaint update"),
    "corrective_action": N_("Corrective action"),
}

REASONS = {
    "satisfaction_survey": N_("A survey is due after every closed visit."),
    "appointment_preparation": N_("Prepare before the booked appointment slot."),
    "consultation_response": N_("An open consultation must be answered in time."),
    "consultation_promise": N_("The client was promised an answer by this time."),
    "complaint_response": N_("Every piece of feedback is answered within 24 hours."),
    "complaint_handling": N_("A major complaint is handled within 48 hours."),
    "complaint_decision": N_("The regulator's deadline for a decision on the complaint."),
    "complaint_summary_resolution": N_("Summary resolution by the third business day."),
    "complaint_final_response": N_("Final response to the complaint within 8 weeks."),
    "complaint_follow_up": N_("Follow up with the client after the resolution."),
    "revisit": N_("Periodic revisit by lifecycle stage."),
    "win_back": N_("One win-back contact for a churned client."),
    "product_review": N_("Periodic review after a product purchase."),
    "suitability_review": N_("A holding no longer fits the client's risk tolerance."),
    "kyc_refresh": N_("Due diligence is refreshed periodically."),
    "gift_escalation": N_("An accepted gift goes to the supervisor."),
    "data_access_request": N_("The client asked for a copy of their personal data."),
    "feedback_response": N_("Every piece of feedback is answered within 24 hours."),
    "complaint_progress_promise": N_("The client was promised an update by this time."),
    "corrective_action": N_("A corrective action is tracked to done."),
}

STAGES = {
    "prospect": N_("Prospect"),
    "new": N_("New"),
    "mature": N_("Mature"),
    "high_net_worth": N_("High net worth"),
    "churned": N_("Churned"),
}

CLIENT_TYPES = {
    "individual": N_("Individual"),
    "corporate": N_("Corporate"),
    "institutional": N_("Institutional"),
    "cross_border": N_("Cross-border"),
}

RISK_LEVELS = {
    "low": N_("Low"),
    "medium": N_("Medium"),
    "high": N_("High"),
    "very_high": N_("Very high"),
}

OUTCOMES = {
    "contacted": N_("Contacted the client"),
    "not_reached": N_("Could not reach the client"),
    "resolved": N_("Resolved"),
    "declined": N_("Client declined"),
    "rescheduled": N_("Rescheduled with the client"),
    "referred": N_("Referred to a colleague"),
    "completed": N_("Done, nothing else to record"),
    "other": N_("Other (see the note)"),
}
"""The closed outcome codes of ``followup.completed`` the RM chooses from."""

DIMENSIONS = {
    "attitude": N_("Service attitude"),
    "professionalism": N_("Product professionalism"),
    "response_speed": N_("Response speed"),
    "risk_management": N_("Risk management"),
    "convenience": N_("Convenience"),
}

STATUSES = {
    "open": N_("Open"),
    "done": N_("Done"),
    "cancelled": N_("Cancelled"),
    "overdue": N_("Overdue"),
    "due_soon": N_("Due soon"),
    "on_track": N_("On track"),
}

SEVERITIES = {
    "general": N_("General"),
    "important": N_("Important"),
    "urgent": N_("Urgent"),
}

COMPLAINT_STATUSES = {
    "received": N_("Received"),
    "acknowledged": N_("Acknowledged"),
    "investigating": N_("Investigating"),
    "resolved": N_("Resolved"),
    "confirmed": N_("Confirmed by the client"),
}

CONSENT_PURPOSES = {
    "service": N_("Service"),
    "marketing": N_("Marketing"),
    "data_sharing": N_("Data sharing"),
    "profiling": N_("Profiling"),
    "research": N_("Research"),
}

VOCABULARY = {
    "kind": TASK_KINDS,
    "reason": REASONS,
    "stage": STAGES,
    "client_type": CLIENT_TYPES,
    "risk": RISK_LEVELS,
    "outcome": OUTCOMES,
    "dimension": DIMENSIONS,
    "status": STATUSES,
    "severity": SEVERITIES,
    "complaint_status": COMPLAINT_STATUSES,
    "purpose": CONSENT_PURPOSES,
}
