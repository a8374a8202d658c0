"""Camera frames in, detections out: batched YOLO inference near the frames."""
