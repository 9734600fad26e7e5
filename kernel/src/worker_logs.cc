// A worker's stdout and stderr logs as the API serves them: what each stream kept, from a byte
// offset on, and, for a client that follows a log (`plume logs -f`), an answer held until bytes
// come after that offset, the worker ends, or the client's wait_ms passes. Nothing polls: every
// append (a pipe drained, an instance's message read) and the worker's end wake the waiters.
#include <string>

#include "supervisor.h"

namespace plume::kernel {

HttpResponse Supervisor::log_answer(Worker& w, bool stdout_stream, uint64_t since) {
  const LogBuffer& buf = stdout_stream ? w.out : w.err;
  uint64_t skipped = 0;
  HttpResponse r;
  r.status = 200;
  r.content_type = "text/plain; charset=utf-8";
  r.body = buf.since(since, skipped);
  r.headers.emplace_back("X-Plume-Log-Dropped", std::to_string(buf.dropped()));
  // Where the next read of a follower starts, what it missed since its last (the buffer kept only
  // the newest bytes), and whether more can ever come.
  r.headers.emplace_back("X-Plume-Log-Offset", std::to_string(buf.total()));
  r.headers.emplace_back("X-Plume-Log-Skipped", std::to_string(skipped));
  r.headers.emplace_back("X-Plume-Log-End", alive(w) ? "false" : "true");
  return r;
}

void Supervisor::worker_log(Worker& w, bool stdout_stream, uint64_t since, uint64_t wait_ms,
                            std::shared_ptr<Responder> responder) {
  // An instance's channel may hold messages a sweep has not read yet (without futex waits); its
  // pipes are read as soon as they hold anything, like every worker's.
  if (stdout_stream) read_instance_messages(w);
  const LogBuffer& buf = stdout_stream ? w.out : w.err;
  if (wait_ms == 0 || !alive(w) || buf.total() > since) return responder->send(log_answer(w, stdout_stream, since));
  auto waiter = std::make_unique<Worker::LogWaiter>();
  waiter->responder = std::move(responder);
  waiter->stdout_stream = stdout_stream;
  waiter->since = since;
  const std::string id = w.id;
  const Worker::LogWaiter* key = waiter.get();
  waiter->timer = loop_.after(std::chrono::milliseconds(wait_ms), [this, id, key] {
    Worker* wk = find_worker(id);
    if (!wk) return;
    if (auto l = take_waiter(wk->log_waiters, key)) l->responder->send(log_answer(*wk, l->stdout_stream, l->since));
  });
  // Followers that went away wait no longer: a client that loops on this cannot grow the list.
  drop_gone_waiters(w.log_waiters);
  w.log_waiters.push_back(std::move(waiter));
}

void Supervisor::wake_log_waiters(Worker& w) {
  if (w.log_waiters.empty()) return;
  const bool ended = !alive(w);
  std::erase_if(w.log_waiters, [&](const std::unique_ptr<Worker::LogWaiter>& l) {
    const LogBuffer& buf = l->stdout_stream ? w.out : w.err;
    if (!ended && buf.total() <= l->since) return false;
    if (l->timer) loop_.cancel(l->timer);
    l->responder->send(log_answer(w, l->stdout_stream, l->since));
    return true;
  });
}

}  // namespace plume::kernel
