"""The SLA scanner: lights turned yellow and red on the clock, escalations, the prediction of late steps."""
