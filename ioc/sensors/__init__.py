"""IoT sensors: FIWARE payloads read into canonical events, and the MQTT bridge that brings them
from the devices' broker into Kafka."""
