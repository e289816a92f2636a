// WorldGate: stops every vCPU of a VM outside guest mode while the VMM changes
// something they must not observe half-done (memslots, after it edited guest
// page tables from the host). vCPU threads call enter() before each KVM_RUN and
// leave() after; with_world_stopped(fn) keeps new entries waiting, kicks the
// vCPUs in guest mode until none is left (re-kicking every 2 ms), runs fn, and
// lets them go. Callable from a vCPU thread (that thread is outside guest
// mode) and from several threads at once (they run one after another).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace pv::run {

class WorldGate {
public:
    WorldGate(uint32_t vcpus, std::function<void(uint32_t)> kick) : m_inside(vcpus, false), m_kick(std::move(kick)) {}

    void enter(uint32_t vcpu) {
        std::unique_lock lock(m_lock);
        m_cv.wait(lock, [this] { return !m_stopping; });
        m_inside[vcpu] = true;
    }
    void leave(uint32_t vcpu) {
        std::lock_guard lock(m_lock);
        m_inside[vcpu] = false;
        m_cv.notify_all();
    }

    template <class Fn>
    auto with_world_stopped(Fn&& fn) {
        std::lock_guard serial(m_stopper);
        {
            std::unique_lock lock(m_lock);
            m_stopping = true;
            ++m_stops;
            while (any_inside()) {
                for (uint32_t v = 0; v < m_inside.size(); ++v)
                    if (m_inside[v]) m_kick(v);
                m_cv.wait_for(lock, std::chrono::milliseconds(2), [this] { return !any_inside(); });
            }
        }
        struct Resume {
            WorldGate& g;
            ~Resume() {
                std::lock_guard lock(g.m_lock);
                g.m_stopping = false;
                g.m_cv.notify_all();
            }
        } resume{*this};
        return fn();
    }

    [[nodiscard]] uint64_t stops() const {
        std::lock_guard lock(m_lock);
        return m_stops;
    }

private:
    bool any_inside() const {
        for (bool b : m_inside)
            if (b) return true;
        return false;
    }

    mutable std::mutex m_lock;
    std::condition_variable m_cv;
    std::mutex m_stopper;        // one stop at a time
    std::vector<bool> m_inside;  // guarded by m_lock
    bool m_stopping = false;     // guarded by m_lock
    uint64_t m_stops = 0;        // guarded by m_lock
    std::function<void(uint32_t)> m_kick;
};

}  // namespace pv::run
