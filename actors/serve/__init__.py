"""The recommender as a Ray Serve deployment (deployment.py); the app it serves, its schemas and
its client are Ray-free, in service/."""
