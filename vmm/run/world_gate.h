// WorldGate: stops every vCPU of a VM outside guest mode while the VMM changes
// something they must not observe half-done (memslots, after it edited guest
// page tables from the host). vCPU threads call enter() before each KVM_RUN and
// leave() after; with_world_stopped(fn) keeps new entries waiting, kicks the
// vCPUs in guest mode until none is left (re-kicking every kRekick), runs fn, and
// lets them go. Callable from a vCPU thread (that thread is outside guest
// mode) and from several threads at once (they run one after another).
//
// "Stopped" means "not between enter() and leave()": a vCPU thread blocked
// anywhere else (on a lock of the address space, in an exit handler) counts as
// stopped, so a stopper holding such a lock never waits for it.
//
// Lock-free in the common case: enter/leave touch only the vCPU's own padded
// atomic flag and read the shared `stopping` word, which only stoppers write.
// The handshake is Dekker's (all seq_cst): enter() stores inside=true THEN loads
// stopping; the stopper stores stopping=true THEN loads every inside flag. So
// either enter() sees the stop (backs out: inside=false, and waits for the end of
// the stop), or the stopper sees the vCPU inside (kicks it and waits for its
// leave()). Waiting uses m_lock/m_cv only while a stop is in progress: leave()
// and a backing-out enter() notify under m_lock only when they see `stopping`,
// and the stopper re-checks the flags under m_lock before each wait, so no
// wake-up is lost (and the wait is bounded by kRekick anyway).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace pv::run {

class WorldGate {
public:
    static constexpr std::chrono::milliseconds kRekick{2};

    WorldGate(uint32_t vcpus, std::function<void(uint32_t)> kick)
        : m_vcpus(vcpus), m_inside(std::make_unique<Flag[]>(vcpus)), m_kick(std::move(kick)) {}

    void enter(uint32_t vcpu) {
        std::atomic<bool>& inside = m_inside[vcpu].value;
        for (;;) {
            inside.store(true);
            if (!m_stopping.load()) [[likely]]
                return;
            inside.store(false);  // back out: a stop is in progress
            std::unique_lock lock(m_lock);
            m_cv.notify_all();  // the stopper may be waiting for this flag
            m_cv.wait(lock, [this] { return !m_stopping.load(); });
        }
    }
    void leave(uint32_t vcpu) {
        m_inside[vcpu].value.store(false);
        if (m_stopping.load()) [[unlikely]] {
            std::lock_guard lock(m_lock);
            m_cv.notify_all();
        }
    }

    template <class Fn>
    auto with_world_stopped(Fn&& fn) {
        std::lock_guard serial(m_stopper);
        m_stopping.store(true);
        m_stops.fetch_add(1, std::memory_order_relaxed);
        {
            std::unique_lock lock(m_lock);
            while (any_inside()) {
                for (uint32_t v = 0; v < m_vcpus; ++v)
                    if (m_inside[v].value.load()) m_kick(v);
                m_cv.wait_for(lock, kRekick, [this] { return !any_inside(); });
            }
        }
        struct Resume {
            WorldGate& g;
            ~Resume() {
                std::lock_guard lock(g.m_lock);
                g.m_stopping.store(false);
                g.m_cv.notify_all();
            }
        } resume{*this};
        return fn();
    }

    [[nodiscard]] uint64_t stops() const { return m_stops.load(std::memory_order_relaxed); }
    [[nodiscard]] bool inside(uint32_t vcpu) const { return m_inside[vcpu].value.load(); }

private:
    struct alignas(64) Flag {
        std::atomic<bool> value{false};
    };

    [[nodiscard]] bool any_inside() const {
        for (uint32_t v = 0; v < m_vcpus; ++v)
            if (m_inside[v].value.load()) return true;
        return false;
    }

    uint32_t m_vcpus;
    std::unique_ptr<Flag[]> m_inside;                 // per vCPU: between enter() and leave()
    alignas(64) std::atomic<bool> m_stopping{false};  // written only by the stopper holding m_stopper
    std::atomic<uint64_t> m_stops{0};
    std::mutex m_stopper;  // one stop at a time
    std::mutex m_lock;     // only for m_cv: waits during a stop
    std::condition_variable m_cv;
    std::function<void(uint32_t)> m_kick;
};

}  // namespace pv::run
