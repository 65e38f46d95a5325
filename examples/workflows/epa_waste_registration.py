# file: workflows/epa_waste_registration.py
from hms_oms import Workflow

epa_waste_registration = Workflow(
    id="epa_waste_reg",
    steps=[
        {"id": "collect_form",     "sla": "5m"},
        {"id": "validate_tax_id",  "sla": "2m"},
        {"id": "charge_fee",       "sla": "1m"},
        {"id": "assign_inspector", "sla": "48h"}
    ]
)
epa_waste_registration.save()
