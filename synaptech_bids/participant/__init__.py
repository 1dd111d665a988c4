"""Participant level of the BIDS-App."""
