"""The HTTP edge: the Open311 GeoReport v2 intake and read-back for the 1022 hotline, the sensor
intake, and the staff API (`app.create_app` composes them)."""
