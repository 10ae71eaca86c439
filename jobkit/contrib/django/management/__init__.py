"""Management commands of jobkit's Django app."""
