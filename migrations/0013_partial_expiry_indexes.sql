DROP INDEX `devices_not_after_id`;--> statement-breakpoint
DROP INDEX `devices_profile_not_after_id`;--> statement-breakpoint
DROP INDEX `devices_status_not_after`;--> statement-breakpoint
CREATE INDEX `devices_not_after_id` ON `devices` (`current_not_after`,`id`) WHERE "devices"."current_not_after" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `devices_profile_not_after_id` ON `devices` (`profile`,`current_not_after`,`id`) WHERE "devices"."current_not_after" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `devices_status_not_after` ON `devices` (`status`,`current_not_after`) WHERE "devices"."current_not_after" IS NOT NULL;