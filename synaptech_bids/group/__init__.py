"""Group level of the BIDS-App."""
