CREATE TABLE `scep_nonces` (
	`transaction_id` text NOT NULL,
	`sender_nonce` text NOT NULL,
	`seen_at` integer NOT NULL,
	PRIMARY KEY(`transaction_id`, `sender_nonce`)
);
--> statement-breakpoint
CREATE INDEX `scep_nonces_seen_at` ON `scep_nonces` (`seen_at`);--> statement-breakpoint
ALTER TABLE `certificates` ADD `protocol` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `enrollment_protocol` text;