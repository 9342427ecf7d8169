"""Names the audit console shows for codes, in English source form (translated where shown)."""

from __future__ import annotations

from branchline_shared.console.i18n import N_

VIEWS = {
    "full": N_("As stored (sealed values)"),
    "masked": N_("Personal values masked"),
    "restricted": N_("Restricted (erasure requested)"),
    "shredded": N_("Destroyed (key shredded)"),
    "pruned": N_("Pruned (retention ended)"),
}

RULES = {
    "D-01": N_("Reception journey"),
    "D-01a": N_("Business before needs or documents"),
    "D-02": N_("Appointment steps"),
    "D-03": N_("Identity and due diligence"),
    "D-04": N_("Consent for personal data"),
    "D-05": N_("Suitability"),
    "D-05b": N_("No backdating"),
    "D-06": N_("Consultations"),
    "D-07": N_("Feedback and complaints"),
    "D-08": N_("Follow-up and revisits"),
    "D-09": N_("Client classification"),
    "D-13": N_("Product shelf"),
    "D-14": N_("Qualified staff"),
    "D-16": N_("Conflicts of interest and gifts"),
}

VOCABULARY = {"view": VIEWS, "rule": RULES}
