import type { Actor } from "../actor.ts";
import {
  deleteWorkload,
  listWorkloads,
  type RegisterWorkloadRequest,
  registerWorkload,
  showWorkload,
  type UpdateWorkloadRequest,
  updateWorkload,
  type WorkloadListRequest,
} from "../workloads.ts";
import type { Door } from "./door.ts";

/** Workload registration entries: which workload, on which devices, gets which SPIFFE ID. */
export class Workloads {
  constructor(private readonly door: Door) {}

  register(actor: Actor, req: RegisterWorkloadRequest) {
    return this.door.run(actor, "workload.register", req.device ?? null, () =>
      registerWorkload(this.door.deps, actor, req),
    );
  }

  list(actor: Actor, req: WorkloadListRequest) {
    return this.door.run(actor, "workload.list", req.device ?? null, () => listWorkloads(this.door.deps, actor, req));
  }

  show(actor: Actor, id: string) {
    return this.door.run(actor, "workload.show", null, () => showWorkload(this.door.deps, actor, id));
  }

  update(actor: Actor, id: string, req: UpdateWorkloadRequest) {
    return this.door.run(actor, "workload.update", null, () => updateWorkload(this.door.deps, actor, id, req));
  }

  delete(actor: Actor, id: string) {
    return this.door.run(actor, "workload.delete", null, () => deleteWorkload(this.door.deps, actor, id));
  }
}
