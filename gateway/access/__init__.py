"""Technical-access-only: staff access requests, the tenant's policy, grants, the read gate
every diagnostic read passes through, tenant notifications, and the technical view.

    settings.py     the [staff_access] section (a leaf: gateway.config imports it)
    policy.py       purpose x level -> auto_approve | require_approval | deny (deny wins)
    requests.py     parsing a staff request
    grants.py       the grant state machine; each transition logged and announced
    gate.py         the read gate: log before access, fail closed
    notifier.py     the tenant's endpoint, the durable outbox, signed delivery with retries
    service.py      StaffAccessService tying them; get_staff_access; startup (PeriodicJobs)
    diagnostics.py  the allow-listed technical view of a call

This file imports nothing, so importing `gateway.access.settings` stays cheap.
"""
