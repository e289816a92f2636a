#include "vmm/store/snapshot_format.h"

#include <xxhash.h>

#include <cstdlib>

namespace pv::store {

uint64_t checksum(std::span<const std::byte> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

Hasher::Hasher() : m_state(XXH3_createState()) {
    if (m_state == nullptr) std::abort();  // a 576-byte allocation failed: out of memory
    reset();
}

Hasher::~Hasher() { XXH3_freeState(static_cast<XXH3_state_t*>(m_state)); }

void Hasher::reset() { XXH3_64bits_reset(static_cast<XXH3_state_t*>(m_state)); }

void Hasher::update(std::span<const std::byte> bytes) {
    XXH3_64bits_update(static_cast<XXH3_state_t*>(m_state), bytes.data(), bytes.size());
}

uint64_t Hasher::digest() const { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(m_state)); }

}  // namespace pv::store
