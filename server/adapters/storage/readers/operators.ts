import { asc } from "drizzle-orm";
import type { DashboardSessionRecord, OperatorRecord } from "../../../ports/storage.ts";
import { dashboardSessions, operators } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** Operators and their dashboard sessions. */
export function operatorReaders<B extends ConnectionClass>(Base: B) {
  return class OperatorReaders extends Base {
    async getOperator(id: string): Promise<OperatorRecord | undefined> {
      return this.findOne(operators, operators.id, id);
    }

    async getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined> {
      return this.findOne(operators, operators.tokenHash, hash);
    }

    async listOperators(): Promise<OperatorRecord[]> {
      return this.db.select().from(operators).orderBy(asc(operators.createdAt)).all();
    }

    async getDashboardSession(idHash: string): Promise<DashboardSessionRecord | undefined> {
      return this.findOne(dashboardSessions, dashboardSessions.idHash, idHash);
    }
  };
}
