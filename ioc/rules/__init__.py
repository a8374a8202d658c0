"""What camera and sensor rules share: how an episode opens and resolves (`hysteresis`)."""
