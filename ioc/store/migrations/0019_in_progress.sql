-- Đang xử lý: when the unit on an incident reported that work had started (staff's third state
-- between acknowledged and resolved); cleared when the incident reopens.
ALTER TABLE fused_incidents ADD COLUMN IF NOT EXISTS work_started_at timestamptz;
