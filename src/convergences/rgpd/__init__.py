"""RGPD by design (issue 5): right of access ("Mes données", art. 15) and erasure (art. 17)."""
