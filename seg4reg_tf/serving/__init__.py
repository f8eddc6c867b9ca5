"""Serving: the SavedModel export, TF Serving clients, and predict's system (TTA, reports, overlays)."""
