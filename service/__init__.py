"""The recommender's HTTP API without Ray: the FastAPI app, its request and response schemas, and
a client. actors/serve/deployment.py runs the app as a Ray Serve deployment; docs/serve.md."""
