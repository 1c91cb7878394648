CREATE TABLE `commands` (
	`op_id` text PRIMARY KEY NOT NULL,
	`batch_id` text NOT NULL,
	`device_id` text NOT NULL,
	`command` text NOT NULL,
	`state` text NOT NULL,
	`created_at` integer NOT NULL,
	`created_by` text NOT NULL,
	`expires_at` integer NOT NULL,
	`sent_at` integer,
	`result_at` integer,
	`error` text
);
--> statement-breakpoint
CREATE INDEX `commands_state` ON `commands` (`state`,`created_at`);--> statement-breakpoint
CREATE INDEX `commands_device` ON `commands` (`device_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `commands_batch` ON `commands` (`batch_id`,`op_id`);--> statement-breakpoint
CREATE TABLE `device_events` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`device_id` text NOT NULL,
	`event_id` text NOT NULL,
	`type` text NOT NULL,
	`at` integer NOT NULL,
	`received_at` integer NOT NULL,
	`body` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `device_events_id` ON `device_events` (`device_id`,`event_id`);--> statement-breakpoint
CREATE INDEX `device_events_device` ON `device_events` (`device_id`,`seq`);--> statement-breakpoint
CREATE TABLE `device_status` (
	`device_id` text PRIMARY KEY NOT NULL,
	`state` text NOT NULL,
	`session` integer NOT NULL,
	`reported_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL,
	`cert_serial` text,
	`cert_not_after` integer,
	`key_alg` text,
	`next_renew_at` integer,
	`agent_version` text,
	`last_renew` text,
	`source` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `device_status_last_seen` ON `device_status` (`last_seen_at`,`device_id`);--> statement-breakpoint
CREATE TABLE `mqtt_sessions` (
	`id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`serial` text NOT NULL,
	`remote` text,
	`connected_at` integer NOT NULL,
	`disconnected_at` integer,
	`close_reason` text,
	`took_over` text
);
--> statement-breakpoint
CREATE INDEX `mqtt_sessions_device` ON `mqtt_sessions` (`device_id`,`connected_at`);--> statement-breakpoint
CREATE INDEX `mqtt_sessions_open` ON `mqtt_sessions` (`disconnected_at`);--> statement-breakpoint
CREATE INDEX `mqtt_sessions_takeover` ON `mqtt_sessions` (`took_over`);--> statement-breakpoint
CREATE TRIGGER `device_events_no_delete` BEFORE DELETE ON `device_events` BEGIN SELECT RAISE(ABORT, 'device_events is append-only'); END;--> statement-breakpoint
CREATE TRIGGER `device_events_no_update` BEFORE UPDATE ON `device_events` BEGIN SELECT RAISE(ABORT, 'device_events is append-only'); END;
