ALTER TABLE `bootstrap_tokens` ADD `names` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `names` text;