CREATE TABLE `device_metadata` (
	`device_id` text PRIMARY KEY NOT NULL,
	`owner` text,
	`location` text,
	`updated_at` integer NOT NULL,
	`updated_by` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `expiry_alerts` (
	`serial` text NOT NULL,
	`threshold_days` integer NOT NULL,
	`device_id` text NOT NULL,
	`sent_at` integer NOT NULL,
	PRIMARY KEY(`serial`, `threshold_days`)
);
