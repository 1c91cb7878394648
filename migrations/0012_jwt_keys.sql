CREATE TABLE `bundle_revisions` (
	`sequence` integer PRIMARY KEY NOT NULL,
	`at` integer NOT NULL,
	`digest` text NOT NULL,
	`reason` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `federated_bundles` (
	`trust_domain` text PRIMARY KEY NOT NULL,
	`jwks` text NOT NULL,
	`sequence` integer,
	`endpoint` text NOT NULL,
	`fetched_at` integer NOT NULL,
	`refresh_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `jwt_keys` (
	`kid` text PRIMARY KEY NOT NULL,
	`public_jwk` text NOT NULL,
	`sealed_key` text,
	`created_at` integer NOT NULL,
	`activates_at` integer NOT NULL,
	`retires_at` integer NOT NULL,
	`removed_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `jwt_keys_removed_at` ON `jwt_keys` (`removed_at`);