import type Database from "better-sqlite3";

export interface CompiledWrite {
  sql: string;
  params: unknown[];
}

export interface BatchFailure {
  message: string;
  code: string | null;
}

export function commitBatch(db: Database.Database, sets: CompiledWrite[][]): (BatchFailure | null)[];
export function configure(db: Database.Database): void;
export function auditHash(fields: unknown[]): string;
export function sealAuditRows(db: Database.Database): number;
