"""In-agent detection: Sigma signatures and correlations evaluated on the event stream, and
the alert events they emit (``podtrail.detect.alert``)."""
