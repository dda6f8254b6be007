"""The recommender service: request/response schemas, the FastAPI app, the Serve deployment,
and an HTTP client for it."""
