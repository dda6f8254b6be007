"""The validate stage on Ray (`driver.py`: `ValidateConfig`, `run_validation`, one Ray task per
run); what it compares and how is validation/'s."""
