"""Start one EPA registration and print its id (the lab's pre-written helper)."""

from hms_oms import start_workflow

instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"})
print(instance_id)   # → "wf-9b2f..."
