// A running featherweight instance's channel, as plumed keeps it moving: what the instance sends
// is read as it arrives (into its stdout log, and to the clients waiting for its replies), and
// what a client sends it goes in whole or not at all, with the channel's room checked first.
//
// Waking: plumed's consumer end of each running instance's channel announces that it sleeps
// (Channel::begin_async_wait) and the loop waits on the doorbell word with IORING_OP_FUTEX_WAIT
// (Linux 6.7+): the instance's send rings it as it would ring a thread, and nothing polls. On
// older kernels, or with PLUME_FUTEX_WAIT=off, a sweep reads every running instance's channel
// every 10 ms while any runs (every 1 ms while a request waits for replies), and none while none
// does.
//
// Room: a request that says wait_for_room_ms and finds too little room in the instance's channel
// (or requests waiting ahead of it) is queued; the queue goes in oldest first, each request whole,
// as the instance frees the ring. plumed waits on ring 0's space bell as it waits on the doorbell
// (the instance's consumer rings it once it has read the ring empty), with the same back-off, and
// the sweep tries the queue where there is no futex wait.
//
// Trust: the doorbell is a word the instance can write. Scribbling it only ends a wait early,
// with nothing to read; after kFreeEmptyWakes of those in a row the next wait starts after a
// back-off that doubles up to a second, so a ringing instance costs plumed a few wake-ups a
// second. A channel whose indices lie is broken for good (Channel's checks), and its instance is
// killed.
#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include "json_response.h"
#include "plume/base/base64.h"
#include "plume/base/log.h"
#include "supervisor.h"

namespace plume::kernel {
namespace {

using namespace std::chrono_literals;

constexpr size_t kReadPerTurn = 256;       // messages read per wake-up: one chatty instance cannot hold the loop
constexpr uint32_t kFreeEmptyWakes = 16;   // wake-ups in a row with nothing to read before backing off
constexpr auto kSweepEvery = 10ms;         // without futex waits
constexpr auto kSweepWhileAsked = 1ms;     // ... while a request waits for replies
constexpr auto kMaxBackOff = 1000ms;
// Requests waiting for one instance's replies at once: what they collect is held in plumed (up to
// MessagesRequest::kMaxReplies messages each), so a tenant cannot make plumed hold much.
constexpr size_t kMaxWaitingPerInstance = 4;
// Requests waiting for room in one instance's channel: their messages are held in plumed.
constexpr size_t kMaxRoomWaitersPerInstance = 4;
// A fork-path instance's held-back messages enter its channel without a bell of ours: look again.
constexpr auto kRoomRecheck = 1ms;

// How long to wait before watching a bell again that rang `empty_wakes` times in a row for
// nothing: none for the first kFreeEmptyWakes, then doubling up to kMaxBackOff.
std::chrono::milliseconds back_off_after(uint32_t empty_wakes) {
  if (empty_wakes <= kFreeEmptyWakes) return 0ms;
  const uint32_t over = std::min<uint32_t>(empty_wakes - kFreeEmptyWakes, 10);
  return std::min<std::chrono::milliseconds>(1ms * (1u << over), kMaxBackOff);
}

json messages_answer(const Worker::ReplyWaiter& r, bool timed_out, bool ended) {
  json replies = json::array();
  for (const std::string& m : r.got) replies.push_back(r.base64 ? base64::encode(m) : m);
  json answer = {{"sent", r.sent}, {"replies", std::move(replies)}, {"timed_out", timed_out}, {"ended", ended}};
  if (r.base64) answer["encoding"] = "base64";
  return answer;
}

}  // namespace

void Supervisor::channel_broke(Worker& w) {
  w.channel_broken = true;
  log::warn("worker.channel_broken", {{"tenant", w.tenant}, {"id", w.id}, {"action", "killed"}});
  (void)signal_worker(w, SIGKILL);
  refuse_room_waiters(w, 409, "conflict", "worker " + w.id + "'s channel is broken; none of these messages were sent");
}

size_t Supervisor::read_messages_of(Worker& w, size_t at_most) {
  fwp::Instance* inst = instance_of(w);
  if (!inst || w.channel_broken) return 0;
  std::vector<std::byte> buf(inst->channel().geometry().max_message());
  size_t n = 0;
  for (; n < at_most; ++n) {
    auto got = inst->try_recv(buf);
    if (!got.ok()) {
      if (got.error() == fwp::ChannelError::corrupt) channel_broke(w);
      break;
    }
    const std::string_view msg(reinterpret_cast<const char*>(buf.data()), got.value());
    // The log: one message a line, between what it writes to its stdout pipe as each is read.
    w.out.append(msg.data(), msg.size());
    w.out.append("\n", 1);
    ++w.messages_out;
    if (Tenant* t = tenants_.find(w.tenant)) ++t->meter.messages_out;
    // The oldest request still waiting takes it (each leaves once it has its count). One whose
    // client went away still counts its share, so that the next request's are its own, but
    // holds none of them.
    if (!w.reply_waiters.empty()) {
      Worker::ReplyWaiter& r = *w.reply_waiters.front();
      if (r.responder->connected()) r.got.emplace_back(msg);
      if (++r.received == r.want) {
        if (r.timer) loop_.cancel(r.timer);
        r.responder->send(json_response(200, messages_answer(r, false, false)));
        w.reply_waiters.erase(w.reply_waiters.begin());
      }
    }
  }
  if (n > 0) wake_log_waiters(w);  // those following its log
  return n;
}

void Supervisor::read_instance_messages(Worker& w) {
  if (w.fwp && w.state == WorkerState::running) (void)read_messages_of(w, 4096);
}

void Supervisor::watch_instance_channel(Worker& w) {
  if (w.channel_op || w.channel_broken || w.state != WorkerState::running) return;
  fwp::Instance* inst = instance_of(w);
  if (!inst) return;
  if (!loop_.supports_futex_wait()) {
    // Sooner while someone waits for this instance's replies or room: cancel a slow sweep for a
    // quick one.
    const bool asked = !w.reply_waiters.empty() || !w.room_waiters.empty();
    if (channel_sweep_op_ && asked && !channel_sweep_quick_) loop_.cancel(channel_sweep_op_), channel_sweep_op_ = 0;
    if (!channel_sweep_op_) {
      channel_sweep_quick_ = asked;
      channel_sweep_op_ = loop_.after(asked ? kSweepWhileAsked : kSweepEvery, [this] { sweep_instance_channels(); });
    }
    return;
  }
  const std::string id = w.id;
  fwp::Channel& channel = inst->channel();
  auto armed = channel.begin_async_wait();
  if (!armed.ok() || armed.value()) {
    // Something to read now (or a broken channel, which the read reports): from the loop, after
    // what else is ready, so that an instance that never stops sending cannot hold it.
    w.channel_op = loop_.after(0ms, [this, id] { on_instance_channel_rung(id); });
    return;
  }
  w.channel_op = loop_.futex_wait(channel.async_wait_word(), fwp::Channel::kAsyncWaitValue,
                                  [this, id](int) { on_instance_channel_rung(id); });
}

void Supervisor::on_instance_channel_rung(const std::string& id) {
  Worker* w = find_worker(id);
  if (!w) return;
  w->channel_op = 0;
  fwp::Instance* inst = instance_of(*w);
  if (!inst || w->state != WorkerState::running) return;
  inst->channel().end_async_wait();
  if (read_messages_of(*w, kReadPerTurn) > 0) {
    w->empty_wakes = 0;
  } else if (back_off_watching(*w, &Worker::channel_op, ++w->empty_wakes, &Supervisor::watch_instance_channel)) {
    return;  // woken for nothing, again and again: its own doing (see the top)
  }
  watch_instance_channel(*w);
}

bool Supervisor::back_off_watching(Worker& w, EventLoop::OpId Worker::*op, uint32_t empty_wakes,
                                   void (Supervisor::*watch)(Worker&)) {
  const auto back_off = back_off_after(empty_wakes);
  if (back_off == 0ms) return false;
  const std::string id = w.id;
  w.*op = loop_.after(back_off, [this, id, op, watch] {
    Worker* wk = find_worker(id);
    if (!wk) return;
    wk->*op = 0;
    (this->*watch)(*wk);
  });
  return true;
}

void Supervisor::sweep_instance_channels() {
  channel_sweep_op_ = 0;
  bool any = false, asked = false;
  for (auto& [id, w] : workers_) {
    if (!w->fwp || w->state != WorkerState::running) continue;
    any = true;
    (void)read_messages_of(*w, kReadPerTurn);
    if (!w->room_waiters.empty()) (void)send_waiting_for_room(*w);
    asked |= !w->reply_waiters.empty() || !w->room_waiters.empty();
  }
  channel_sweep_quick_ = asked;
  if (any) channel_sweep_op_ = loop_.after(asked ? kSweepWhileAsked : kSweepEvery, [this] { sweep_instance_channels(); });
}

void Supervisor::answer_reply_waiters(Worker& w, bool ended) {
  auto waiters = std::move(w.reply_waiters);
  w.reply_waiters.clear();
  for (auto& r : waiters) {
    if (r->timer) loop_.cancel(r->timer);
    r->responder->send(json_response(200, messages_answer(*r, false, ended)));
  }
}

void Supervisor::send_instance_messages(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder) {
  const std::vector<std::string>& messages = asked.messages;
  const size_t replies = asked.replies;
  if (!w.fwp)
    return responder->send(HttpResponse::error(400, "bad_request", "worker " + w.id + " is not a featherweight instance: it has no channel"));
  fwp::Instance* inst = instance_of(w);
  if (w.state != WorkerState::running || !inst || w.channel_broken)
    return responder->send(HttpResponse::error(409, "conflict", "worker " + w.id + " is not running"));
  const size_t max_message = inst->channel().geometry().max_message();
  if (std::string e = oversized_message(messages, "messages", max_message); !e.empty())
    return responder->send(HttpResponse::error(400, "bad_request", e));
  if (replies > MessagesRequest::kMaxReplyBytes / max_message)
    return responder->send(HttpResponse::error(
        400, "bad_request",
        "replies: " + std::to_string(replies) + " of up to " + std::to_string(max_message) +
            " bytes each, more than a request may hold (" + std::to_string(MessagesRequest::kMaxReplyBytes) +
            " bytes); at most " + std::to_string(MessagesRequest::kMaxReplyBytes / max_message) + " at a time"));
  // Those waiting for room count too: each waits for replies once its messages are in.
  const auto waiting_for_replies = [&w] {
    return w.reply_waiters.size() +
           static_cast<size_t>(std::count_if(w.room_waiters.begin(), w.room_waiters.end(),
                                             [](const auto& r) { return r->asked.replies > 0; }));
  };
  if (replies > 0 && waiting_for_replies() >= kMaxWaitingPerInstance) {
    drop_gone_waiters(w.reply_waiters);
    drop_gone_waiters(w.room_waiters);
    if (waiting_for_replies() >= kMaxWaitingPerInstance)
      return responder->send(HttpResponse::error(429, "limit_exceeded",
                                                 "worker " + w.id + " has " + std::to_string(kMaxWaitingPerInstance) +
                                                     " requests waiting for its replies already"));
  }
  // All or none, so a request can never fit where more than the whole ring is asked for.
  const uint32_t slots = inst->channel().geometry().slots;
  if (messages.size() > slots)
    return responder->send(HttpResponse::error(
        400, "bad_request", "messages: " + std::to_string(messages.size()) + ", more than worker " + w.id +
                                "'s channel holds (" + std::to_string(slots) + "); send them in parts"));
  // Behind the requests that wait for room already: the channel is one ordered stream. (One that
  // only waits for replies needs no room: it takes the next replies, as it would have anyway.)
  drop_gone_waiters(w.room_waiters);
  if (!w.room_waiters.empty() && !messages.empty()) {
    if (asked.wait_for_room_ms == 0)
      return responder->send(HttpResponse::error(
          429, "channel_full", "worker " + w.id + "'s channel: " + std::to_string(w.room_waiters.size()) +
                                   " requests wait for room ahead of this one; none of it was sent"));
    return wait_for_room(w, asked, std::move(responder));
  }
  // Replies to what came before are not this request's: read them into the log (and to the
  // requests waiting for them) first.
  (void)read_messages_of(w, 4096);
  // A channel that lies (found by that read, or by this check of its consumer index) is broken for
  // good, and its instance is killed: nothing more goes in.
  auto room = inst->send_capacity();
  if (!room.ok() || w.channel_broken) {
    if (!w.channel_broken) channel_broke(w);
    return responder->send(HttpResponse::error(409, "conflict", "worker " + w.id + "'s channel is broken"));
  }
  if (room.value() >= messages.size()) return deliver_messages(w, asked, std::move(responder));
  if (asked.wait_for_room_ms > 0) return wait_for_room(w, asked, std::move(responder));
  responder->send(HttpResponse::error(
      429, "channel_full", "worker " + w.id + "'s channel has room for " + std::to_string(room.value()) +
                               " more messages; it has not read the others yet"));
}

// Room checked by the caller: queue() cannot fail for it (only plumed sends on ring 0).
void Supervisor::deliver_messages(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder) {
  fwp::Instance* inst = instance_of(w);
  // Replies to what came before are not this request's (see send_instance_messages).
  (void)read_messages_of(w, 4096);
  if (!inst || w.channel_broken)
    return responder->send(HttpResponse::error(409, "conflict", "worker " + w.id + "'s channel is broken"));
  for (const std::string& m : asked.messages) {
    // `corrupt` breaks it.
    if (auto sent = inst->queue(std::as_bytes(std::span(m.data(), m.size()))); !sent.ok()) {
      return responder->send(HttpResponse::error(409, "conflict", "worker " + w.id + "'s channel: " +
                                                                      fwp::channel_error_name(sent.error())));
    }
    ++w.messages_in;
  }
  if (Tenant* t = tenants_.find(w.tenant)) t->meter.messages_in += asked.messages.size();
  auto waiter = std::make_unique<Worker::ReplyWaiter>();
  waiter->responder = std::move(responder);
  waiter->sent = asked.messages.size();
  waiter->want = asked.replies;
  waiter->base64 = asked.base64;
  if (asked.replies == 0) return waiter->responder->send(json_response(200, messages_answer(*waiter, false, false)));
  if (asked.timeout_ms > 0) {
    const std::string id = w.id;
    const Worker::ReplyWaiter* key = waiter.get();
    waiter->timer = loop_.after(std::chrono::milliseconds(asked.timeout_ms), [this, id, key] {
      Worker* wk = find_worker(id);
      if (!wk) return;
      if (auto r = take_waiter(wk->reply_waiters, key)) r->responder->send(json_response(200, messages_answer(*r, true, false)));
    });
  }
  w.reply_waiters.push_back(std::move(waiter));
  watch_instance_channel(w);
}

void Supervisor::wait_for_room(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder) {
  if (w.room_waiters.size() >= kMaxRoomWaitersPerInstance)
    return responder->send(HttpResponse::error(
        429, "limit_exceeded", "worker " + w.id + " has " + std::to_string(kMaxRoomWaitersPerInstance) +
                                   " requests waiting for room in its channel already; none of this one was sent"));
  auto waiter = std::make_unique<Worker::RoomWaiter>();
  waiter->responder = std::move(responder);
  waiter->asked = asked;
  const std::string id = w.id;
  const Worker::RoomWaiter* key = waiter.get();
  const uint64_t ms = asked.wait_for_room_ms;
  waiter->timer = loop_.after(std::chrono::milliseconds(ms), [this, id, key, ms] {
    Worker* wk = find_worker(id);
    if (!wk) return;
    auto r = take_waiter(wk->room_waiters, key);
    if (!r) return;
    r->responder->send(HttpResponse::error(
        429, "channel_full", "worker " + id + "'s channel had no room for these messages within " +
                                 std::to_string(ms) + " ms; none of them were sent"));
    // Those behind it may fit where it did not.
    (void)send_waiting_for_room(*wk);
    watch_instance_room(*wk);
  });
  w.room_waiters.push_back(std::move(waiter));
  watch_instance_room(w);
}

bool Supervisor::send_waiting_for_room(Worker& w) {
  bool sent = false;
  drop_gone_waiters(w.room_waiters);  // a client that went away sends nothing
  while (!w.room_waiters.empty()) {
    fwp::Instance* inst = instance_of(w);
    if (!inst || w.channel_broken || w.state != WorkerState::running) break;  // answered as it ends or breaks
    auto room = inst->send_capacity();
    if (!room.ok()) {
      channel_broke(w);  // answers those waiting
      break;
    }
    if (room.value() < w.room_waiters.front()->asked.messages.size()) break;
    std::unique_ptr<Worker::RoomWaiter> r = std::move(w.room_waiters.front());
    w.room_waiters.erase(w.room_waiters.begin());
    if (r->timer) loop_.cancel(r->timer);
    deliver_messages(w, r->asked, std::move(r->responder));
    sent = true;
  }
  return sent;
}

void Supervisor::watch_instance_room(Worker& w) {
  if (w.room_op || w.room_waiters.empty() || w.channel_broken || w.state != WorkerState::running) return;
  fwp::Instance* inst = instance_of(w);
  if (!inst) return;
  if (!loop_.supports_futex_wait()) return watch_instance_channel(w);  // the sweep tries the queue
  const std::string id = w.id;
  if (inst->holds_messages_back()) {
    w.room_op = loop_.after(kRoomRecheck, [this, id] { on_instance_room_rung(id); });
    return;
  }
  fwp::Channel& channel = inst->channel();
  auto armed = channel.begin_async_space_wait(static_cast<uint32_t>(w.room_waiters.front()->asked.messages.size()));
  if (!armed.ok() || armed.value()) {
    // Room now (or a broken channel, which the next look reports): from the loop.
    w.room_op = loop_.after(0ms, [this, id] { on_instance_room_rung(id); });
    return;
  }
  w.room_op = loop_.futex_wait(channel.async_space_word(), fwp::Channel::kAsyncWaitValue,
                               [this, id](int) { on_instance_room_rung(id); });
}

void Supervisor::on_instance_room_rung(const std::string& id) {
  Worker* w = find_worker(id);
  if (!w) return;
  w->room_op = 0;
  fwp::Instance* inst = instance_of(*w);
  if (!inst || w->state != WorkerState::running) return;
  inst->channel().end_async_space_wait();
  if (w->room_waiters.empty()) return;
  if (send_waiting_for_room(*w)) {
    w->empty_room_wakes = 0;
  } else if (!inst->holds_messages_back() &&
             back_off_watching(*w, &Worker::room_op, ++w->empty_room_wakes, &Supervisor::watch_instance_room)) {
    // The bell rings once the ring is read empty, when any request fits: one that rings without
    // that is the instance's own doing, as with the doorbell.
    return;
  }
  watch_instance_room(*w);
}

void Supervisor::refuse_room_waiters(Worker& w, int status, const std::string& code, const std::string& why) {
  if (w.room_op) loop_.cancel(w.room_op);
  w.room_op = 0;
  auto waiters = std::move(w.room_waiters);
  w.room_waiters.clear();
  for (auto& r : waiters) {
    if (r->timer) loop_.cancel(r->timer);
    r->responder->send(HttpResponse::error(status, code, why));
  }
}

}  // namespace plume::kernel
