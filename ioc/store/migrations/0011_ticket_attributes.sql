-- Answers to a service's questions (Open311 `attribute[code]`, see ioc.hotline.attributes), as
-- validated at intake: {"nguoi_mac_ket": ["co"], "phuong_tien": ["xe_tai", "xe_may"]}. Kept
-- beside the description, never in it: the description is the citizen's own words.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}';

-- Free-text answers (the polluter's name, what happened) may quote people, as the description
-- may: the column stays hidden from ioc_grafana (tickets are granted column by column, 0008).
