CREATE TABLE `workload_entries` (
	`id` text PRIMARY KEY NOT NULL,
	`parent_kind` text NOT NULL,
	`parent_value` text NOT NULL,
	`name` text NOT NULL,
	`spiffe_id` text,
	`fleet_wide` integer NOT NULL,
	`selectors` text NOT NULL,
	`ttl_seconds` integer NOT NULL,
	`jwt_audiences` text NOT NULL,
	`revision` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`created_by` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `workload_entries_parent_name` ON `workload_entries` (`parent_kind`,`parent_value`,`name`);--> statement-breakpoint
ALTER TABLE `certificates` ADD `workload_entry_id` text;--> statement-breakpoint
ALTER TABLE `certificates` ADD `spiffe_id` text;--> statement-breakpoint
CREATE INDEX `certificates_workload_entry` ON `certificates` (`workload_entry_id`,`status`) WHERE "certificates"."workload_entry_id" IS NOT NULL;--> statement-breakpoint
-- write_guards is always empty (its rows are inserted and removed within one write set):
-- it is recreated with the new CHECKs (workload_entry_unchanged, workload_key_free) rather than copied, as in 0009.
DROP TABLE `write_guards`;--> statement-breakpoint
CREATE TABLE `write_guards` (
	`name` text NOT NULL,
	`ok` integer NOT NULL,
	CONSTRAINT "appliance_quota" CHECK("name" <> 'appliance_quota' OR "ok" = 1),
	CONSTRAINT "pending_quota" CHECK("name" <> 'pending_quota' OR "ok" = 1),
	CONSTRAINT "device_unchanged" CHECK("name" <> 'device_unchanged' OR "ok" = 1),
	CONSTRAINT "device_active" CHECK("name" <> 'device_active' OR "ok" = 1),
	CONSTRAINT "device_not_revoked" CHECK("name" <> 'device_not_revoked' OR "ok" = 1),
	CONSTRAINT "certificate_valid" CHECK("name" <> 'certificate_valid' OR "ok" = 1),
	CONSTRAINT "certificate_unrevoked" CHECK("name" <> 'certificate_unrevoked' OR "ok" = 1),
	CONSTRAINT "certificate_unused" CHECK("name" <> 'certificate_unused' OR "ok" = 1),
	CONSTRAINT "token_usable" CHECK("name" <> 'token_usable' OR "ok" = 1),
	CONSTRAINT "token_unused" CHECK("name" <> 'token_unused' OR "ok" = 1),
	CONSTRAINT "idevid_bound" CHECK("name" <> 'idevid_bound' OR "ok" = 1),
	CONSTRAINT "pending_status" CHECK("name" <> 'pending_status' OR "ok" = 1),
	CONSTRAINT "operator_active" CHECK("name" <> 'operator_active' OR "ok" = 1),
	CONSTRAINT "appliance_count" CHECK("name" <> 'appliance_count' OR "ok" = 1),
	CONSTRAINT "workload_entry_unchanged" CHECK("name" <> 'workload_entry_unchanged' OR "ok" = 1),
	CONSTRAINT "workload_key_free" CHECK("name" <> 'workload_key_free' OR "ok" = 1)
);
