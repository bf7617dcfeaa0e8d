"""The OpenStack Swift API: a thin adapter over the object service (routes.py
classifies, frontend.py authenticates and dispatches, errors.py is the Swift
error table)."""
