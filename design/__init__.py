"""Which runs a sweep makes, decided without Ray: the settings (`sweep_config.py`,
`sweep_design.py`), the proposer of mixtures, data states and seeds (`run_proposer.py`), the plan
of a sweep on a cluster (`sweep_plan.py`), what a trial reports (`trial_protocol.py`), and the
same runs as a plan for an outside trainer (`generate` / `collect`: `swarm_plan.py`,
`swarm_runs.py`). actors/ runs them on Ray."""
