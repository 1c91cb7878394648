CREATE TABLE `crl_numbers` (
	`issuer` text PRIMARY KEY NOT NULL,
	`number` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `revocations` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`serial` text NOT NULL,
	`issuer` text NOT NULL,
	`device_id` text NOT NULL,
	`revoked_at` integer NOT NULL,
	`reason` integer,
	`not_after` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `revocations_serial` ON `revocations` (`serial`);--> statement-breakpoint
CREATE INDEX `revocations_not_after` ON `revocations` (`not_after`);--> statement-breakpoint
ALTER TABLE `audit_events` ADD `prev_hash` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `hash` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `current_not_after` integer;--> statement-breakpoint
CREATE INDEX `devices_not_after_id` ON `devices` (`current_not_after`,`id`);--> statement-breakpoint
ALTER TABLE `idevid_bindings` ADD `revoked_at` integer;--> statement-breakpoint
ALTER TABLE `operators` ADD `expires_at` integer;--> statement-breakpoint
ALTER TABLE `operators` ADD `created_by` text;--> statement-breakpoint
DROP TABLE `pending_enrollments`;--> statement-breakpoint
CREATE TABLE `pending_enrollments` (
	`id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`profile` text NOT NULL,
	`csr` blob NOT NULL,
	`key_fingerprint` text NOT NULL,
	`key_type` text NOT NULL,
	`status` text NOT NULL,
	`method` text NOT NULL,
	`requested_by` text NOT NULL,
	`token_id` text,
	`remote` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`decided_at` integer,
	`decided_by` text,
	`decision_reason` text,
	`serial` text
);
--> statement-breakpoint
CREATE INDEX `pending_enrollments_device` ON `pending_enrollments` (`device_id`,`status`);--> statement-breakpoint
CREATE INDEX `pending_enrollments_status_id` ON `pending_enrollments` (`status`,`id`);--> statement-breakpoint
UPDATE `devices` SET `current_not_after` = (SELECT `not_after` FROM `certificates` WHERE `certificates`.`serial` = `devices`.`current_serial`);--> statement-breakpoint
INSERT INTO `revocations` (`serial`, `issuer`, `device_id`, `revoked_at`, `reason`, `not_after`) SELECT `serial`, `issuer`, `device_id`, `revoked_at`, `revocation_reason`, `not_after` FROM `certificates` WHERE `status` = 'revoked' ORDER BY `revoked_at`;--> statement-breakpoint
CREATE TRIGGER `audit_events_no_delete` BEFORE DELETE ON `audit_events` BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;--> statement-breakpoint
CREATE TRIGGER `audit_events_no_update` BEFORE UPDATE ON `audit_events` WHEN OLD.`hash` IS NOT NULL BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
