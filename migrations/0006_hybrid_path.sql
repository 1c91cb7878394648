CREATE TABLE `write_guards` (
	`name` text NOT NULL,
	`ok` integer NOT NULL,
	CONSTRAINT "appliance_quota" CHECK("write_guards"."name" <> 'appliance_quota' OR "write_guards"."ok" = 1)
);
--> statement-breakpoint
ALTER TABLE `bootstrap_tokens` ADD `names` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `names` text;--> statement-breakpoint
CREATE INDEX `devices_profile_not_after_id` ON `devices` (`profile`,`current_not_after`,`id`);