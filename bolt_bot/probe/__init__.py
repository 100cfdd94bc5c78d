"""Code that runs inside the measured project's environment (no Bolt imports)."""
