CREATE INDEX `audit_events_action_at` ON `audit_events` (`action`,`at`);--> statement-breakpoint
-- write_guards is always empty (its rows are inserted and removed within one write set):
-- it is recreated with the new CHECKs (pending_quota, certificate_unrevoked) rather than copied, as in 0008.
DROP TABLE `write_guards`;--> statement-breakpoint
CREATE TABLE `write_guards` (
	`name` text NOT NULL,
	`ok` integer NOT NULL,
	CONSTRAINT "appliance_quota" CHECK("name" <> 'appliance_quota' OR "ok" = 1),
	CONSTRAINT "pending_quota" CHECK("name" <> 'pending_quota' OR "ok" = 1),
	CONSTRAINT "device_unchanged" CHECK("name" <> 'device_unchanged' OR "ok" = 1),
	CONSTRAINT "device_active" CHECK("name" <> 'device_active' OR "ok" = 1),
	CONSTRAINT "device_not_revoked" CHECK("name" <> 'device_not_revoked' OR "ok" = 1),
	CONSTRAINT "certificate_valid" CHECK("name" <> 'certificate_valid' OR "ok" = 1),
	CONSTRAINT "certificate_unrevoked" CHECK("name" <> 'certificate_unrevoked' OR "ok" = 1),
	CONSTRAINT "certificate_unused" CHECK("name" <> 'certificate_unused' OR "ok" = 1),
	CONSTRAINT "token_usable" CHECK("name" <> 'token_usable' OR "ok" = 1),
	CONSTRAINT "token_unused" CHECK("name" <> 'token_unused' OR "ok" = 1),
	CONSTRAINT "idevid_bound" CHECK("name" <> 'idevid_bound' OR "ok" = 1),
	CONSTRAINT "pending_status" CHECK("name" <> 'pending_status' OR "ok" = 1),
	CONSTRAINT "operator_active" CHECK("name" <> 'operator_active' OR "ok" = 1),
	CONSTRAINT "appliance_count" CHECK("name" <> 'appliance_count' OR "ok" = 1)
);
