CREATE TABLE `audit_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` integer NOT NULL,
	`actor` text NOT NULL,
	`action` text NOT NULL,
	`outcome` text NOT NULL,
	`device_id` text,
	`serial` text,
	`remote` text,
	`detail` text
);
--> statement-breakpoint
CREATE INDEX `audit_events_device` ON `audit_events` (`device_id`,`id`);--> statement-breakpoint
CREATE INDEX `audit_events_at` ON `audit_events` (`at`);--> statement-breakpoint
CREATE TABLE `bootstrap_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`hash` text NOT NULL,
	`device_id` text NOT NULL,
	`profile` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	`used_serial` text,
	`revoked_at` integer,
	`created_by` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `bootstrap_tokens_hash` ON `bootstrap_tokens` (`hash`);--> statement-breakpoint
CREATE INDEX `bootstrap_tokens_device` ON `bootstrap_tokens` (`device_id`);--> statement-breakpoint
CREATE TABLE `certificates` (
	`serial` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`profile` text NOT NULL,
	`issuer` text NOT NULL,
	`not_before` integer NOT NULL,
	`not_after` integer NOT NULL,
	`fingerprint` text NOT NULL,
	`key_fingerprint` text NOT NULL,
	`key_type` text NOT NULL,
	`status` text NOT NULL,
	`revoked_at` integer,
	`revocation_reason` integer,
	`der` blob NOT NULL,
	`issued_at` integer NOT NULL,
	`method` text NOT NULL,
	`replaces_serial` text,
	`bootstrap_token_id` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `certificates_fingerprint` ON `certificates` (`fingerprint`);--> statement-breakpoint
CREATE UNIQUE INDEX `certificates_bootstrap_token` ON `certificates` (`bootstrap_token_id`);--> statement-breakpoint
CREATE INDEX `certificates_device` ON `certificates` (`device_id`,`issued_at`);--> statement-breakpoint
CREATE INDEX `certificates_not_after` ON `certificates` (`not_after`);--> statement-breakpoint
CREATE TABLE `devices` (
	`id` text PRIMARY KEY NOT NULL,
	`profile` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`last_enrolled_at` integer,
	`current_serial` text
);
--> statement-breakpoint
CREATE INDEX `devices_status_id` ON `devices` (`status`,`id`);--> statement-breakpoint
CREATE INDEX `devices_profile_id` ON `devices` (`profile`,`id`);--> statement-breakpoint
CREATE TABLE `idevid_bindings` (
	`device_id` text PRIMARY KEY NOT NULL,
	`fingerprint` text NOT NULL,
	`subject` text NOT NULL,
	`bound_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `idevid_bindings_fingerprint` ON `idevid_bindings` (`fingerprint`);--> statement-breakpoint
CREATE TABLE `operators` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`role` text NOT NULL,
	`token_hash` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `operators_token_hash` ON `operators` (`token_hash`);--> statement-breakpoint
CREATE TABLE `pending_enrollments` (
	`id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`profile` text NOT NULL,
	`csr` blob NOT NULL,
	`key_fingerprint` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`decided_at` integer,
	`decided_by` text
);
--> statement-breakpoint
CREATE INDEX `pending_enrollments_device` ON `pending_enrollments` (`device_id`,`status`);