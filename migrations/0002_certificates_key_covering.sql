DROP INDEX `certificates_key`;--> statement-breakpoint
CREATE INDEX `certificates_key_device` ON `certificates` (`key_fingerprint`,`device_id`);