"""Second factors (TOTP, recovery codes), the two-step login, step-up, login history and alerts."""
