"""The SQL backends, one module per driver; `base` holds the interface they implement."""
