CREATE TABLE `device_keys` (
	`key_fingerprint` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`as_sent` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `device_keys_as_sent` ON `device_keys` (`as_sent`) WHERE `as_sent` = 1;--> statement-breakpoint
ALTER TABLE `certificates` ADD `first_used_at` integer;--> statement-breakpoint
ALTER TABLE `devices` ADD `revision` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
-- write_guards is always empty (its rows are inserted and removed within one write set):
-- it is recreated with one CHECK per precondition rather than copied.
DROP TABLE `write_guards`;--> statement-breakpoint
CREATE TABLE `write_guards` (
	`name` text NOT NULL,
	`ok` integer NOT NULL,
	CONSTRAINT "appliance_quota" CHECK("name" <> 'appliance_quota' OR "ok" = 1),
	CONSTRAINT "device_unchanged" CHECK("name" <> 'device_unchanged' OR "ok" = 1),
	CONSTRAINT "device_active" CHECK("name" <> 'device_active' OR "ok" = 1),
	CONSTRAINT "device_not_revoked" CHECK("name" <> 'device_not_revoked' OR "ok" = 1),
	CONSTRAINT "certificate_valid" CHECK("name" <> 'certificate_valid' OR "ok" = 1),
	CONSTRAINT "certificate_unused" CHECK("name" <> 'certificate_unused' OR "ok" = 1),
	CONSTRAINT "token_usable" CHECK("name" <> 'token_usable' OR "ok" = 1),
	CONSTRAINT "token_unused" CHECK("name" <> 'token_unused' OR "ok" = 1),
	CONSTRAINT "idevid_bound" CHECK("name" <> 'idevid_bound' OR "ok" = 1),
	CONSTRAINT "pending_status" CHECK("name" <> 'pending_status' OR "ok" = 1),
	CONSTRAINT "operator_active" CHECK("name" <> 'operator_active' OR "ok" = 1),
	CONSTRAINT "appliance_count" CHECK("name" <> 'appliance_count' OR "ok" = 1)
);
--> statement-breakpoint
-- One key, one identity for the certificates issued before this table existed: each key
-- belongs to the device that was certified for it first. Their fingerprints are of the
-- SPKI as it was sent (as_sent = 1): it may be another spelling of a canonical key.
INSERT OR IGNORE INTO `device_keys` (`key_fingerprint`, `device_id`, `as_sent`)
  SELECT `key_fingerprint`, `device_id`, 1 FROM `certificates` ORDER BY `issued_at`, `serial`;
