import Foundation
import Synchronization

extension MemoryQueue {
    public func pendingGroups(now: Date) async throws -> [PendingGroup] {
        storage.withLock { storage in
            var groups: [PendingGroup] = []
            for row in storage.rows where row.state == .pending && row.nextAttemptAt <= now {
                let bytes = row.row.body.utf8.count
                if let at = groups.firstIndex(where: { $0.model == row.row.deployment && $0.api == row.row.api }) {
                    groups[at].rows += 1
                    groups[at].bytes += bytes
                } else {
                    groups.append(PendingGroup(model: row.row.deployment, api: row.row.api, rows: 1, bytes: bytes))
                }
            }
            return groups
        }
    }

    public func cutBatch(_ cut: BatchCut, now: Date) async throws -> BatchRecord? {
        storage.withLock { storage in
            var chosen: [Int] = []
            var bytes = 0
            var tokens = 0
            for at in storage.rows.indices where chosen.count < cut.maxRows {
                let row = storage.rows[at]
                guard row.state == .pending, row.nextAttemptAt <= now, row.row.deployment == cut.model, row.row.api == cut.api else { continue }
                let line = row.row.body.utf8.count + cut.lineOverhead
                // As SQLite's running sums: the first row whatever its bytes, then rows while
                // the bytes fit; never beyond the tokens.
                if !chosen.isEmpty, bytes + line > cut.maxBytes { break }
                if tokens + row.row.estimatedTokens > cut.maxTokens { break }
                bytes += line
                tokens += row.row.estimatedTokens
                chosen.append(at)
            }
            guard !chosen.isEmpty else { return nil }
            let number = Int64(storage.batches.count + 1)
            for at in chosen {
                storage.rows[at].state = .running
                storage.rows[at].leaseOwner = BatchRecord.owner(number)
                storage.rows[at].leaseExpiresAt = .distantFuture
            }
            let batch = BatchRecord(
                number: number, target: cut.target, model: cut.model, api: cut.api, rows: chosen.count, bytes: bytes, tokens: tokens, createdAt: now
            )
            storage.batches.append(batch)
            return batch
        }
    }

    public func updateBatch(_ batch: BatchRecord) async throws {
        storage.withLock { storage in
            guard let at = storage.batches.firstIndex(where: { $0.number == batch.number }) else { return }
            // As SQLite's: everything but the rows and the claim.
            var updated = batch
            (updated.rows, updated.bytes, updated.tokens) = (storage.batches[at].rows, storage.batches[at].bytes, storage.batches[at].tokens)
            (updated.owner, updated.ownerUntil) = (storage.batches[at].owner, storage.batches[at].ownerUntil)
            updated.cancelRequested = updated.cancelRequested || storage.batches[at].cancelRequested
            storage.batches[at] = updated
        }
    }

    public func claimBatch(_ number: Int64, owner: String, until: Date, now: Date, replacing: String?) async throws -> Bool {
        storage.withLock { storage in
            guard let at = storage.batches.firstIndex(where: { $0.number == number }) else { return false }
            let holder = storage.batches[at].owner
            let free = holder == nil || holder == owner || (storage.batches[at].ownerUntil ?? .distantPast) < now || (replacing != nil && holder == replacing)
            guard free else { return false }
            storage.batches[at].owner = owner
            storage.batches[at].ownerUntil = until
            return true
        }
    }

    public func requestCancel(_ number: Int64) async throws {
        storage.withLock { storage in
            for at in storage.batches.indices where storage.batches[at].number == number { storage.batches[at].cancelRequested = true }
        }
    }

    public func renewBatchClaims(owner: String, until: Date?) async throws {
        storage.withLock { storage in
            for at in storage.batches.indices where storage.batches[at].owner == owner {
                storage.batches[at].ownerUntil = until
                if until == nil { storage.batches[at].owner = nil }
            }
        }
    }

    public func batches() async throws -> [BatchRecord] {
        storage.withLock { $0.batches }
    }

    public func forEachBatchLine(number: Int64, _ body: (BatchLine) throws -> Void) async throws {
        let owner = BatchRecord.owner(number)
        let rows = storage.withLock { $0.rows.filter { $0.isHeld(by: owner) } }
        for row in rows {
            try body(
                BatchLine(
                    seq: row.seq, id: row.row.id, api: row.row.api, deployment: row.row.deployment, body: row.row.body, attempts: row.attempts,
                    outputRetries: row.outputRetries
                )
            )
        }
    }
}
