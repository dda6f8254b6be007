"""Training a model over several data-parallel workers, without Ray: how a run is spread over
ranks, its global batch, resume point and memory check (`distributed.py`), and one rank's FSDP2
loop, loading and checkpoints (`fsdp_train.py`, torch imported inside its functions). Validation
trains target models this way, and so does a sweep whose proxies take several GPUs;
actors/target/ray_train.py runs it as a Ray Train run."""
