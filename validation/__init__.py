"""The validation stage without Ray: the mixtures it compares (`candidates.py`), the runs that have
landed in VAL_DIR/runs/ and the resume check over them (`runs.py`), and the comparison of their
outcomes: AvgDev, paired verdicts, power, the table and figure (`comparison.py`).
actors/validate/ trains the runs on a cluster; reporting/report.py shows the comparison."""
