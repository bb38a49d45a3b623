// Packed weights kept between calls of a CPU kernel.
//
// A generator runs each layer with the same weights call after call, and
// repacking a large layer's weights into its tile layout costs several
// percent of the layer's time. An entry is
// served only while the weight still holds exactly the values it was packed
// from, checked element by element against a copy kept with the entry: a
// plain read, several times cheaper than packing, and an update of any kind
// (optimizer step, `.data`, numpy, a new tensor at a freed address) can
// never be served stale packed weights. The key (`layout`) names everything
// else the packed layout depends on.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace aigc {

struct PackedWeights {
  std::string layout;           // what the packing depended on, besides the values
  std::vector<uint8_t> source;  // the weight's bytes when packed
  std::vector<float> packed;    // the packed weights (any element type, float-aligned)
};

class PackedWeightCache {
 public:
  // Entries past this many bytes (sources and packed) are dropped, least
  // recently used first.
  static constexpr size_t kBudgetBytes = size_t(256) << 20;

  static PackedWeightCache& instance() {
    static PackedWeightCache cache;
    return cache;
  }

  // The entry for `layout` whose source equals [bytes, bytes + size), or null.
  std::shared_ptr<const PackedWeights> find(const std::string& layout, const void* bytes,
                                            size_t size) {
    std::shared_ptr<const PackedWeights> candidate;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if ((*it)->layout != layout) continue;
        candidate = *it;
        entries_.splice(entries_.begin(), entries_, it);  // most recently used first
        break;
      }
    }
    if (candidate == nullptr || candidate->source.size() != size ||
        !equal_bytes(candidate->source.data(), bytes, size))
      return nullptr;
    return candidate;
  }

  void insert(std::shared_ptr<const PackedWeights> entry) {
    const size_t bytes = footprint(*entry);
    if (bytes > kBudgetBytes) return;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if ((*it)->layout == entry->layout) {  // replaced: the weight changed in place
        used_ -= footprint(**it);
        entries_.erase(it);
        break;
      }
    }
    while (!entries_.empty() && used_ + bytes > kBudgetBytes) {
      used_ -= footprint(*entries_.back());
      entries_.pop_back();
    }
    entries_.push_front(std::move(entry));
    used_ += bytes;
  }

 private:
  static size_t footprint(const PackedWeights& e) {
    return e.source.size() + e.packed.size() * sizeof(float);
  }

  // memcmp over the intra-op threads: megabytes of weights, read once.
  static bool equal_bytes(const void* a, const void* b, size_t size) {
    constexpr size_t kPiece = size_t(1) << 20;
    const int64_t pieces = static_cast<int64_t>((size + kPiece - 1) / kPiece);
    std::atomic<bool> equal{true};
    at::parallel_for(0, pieces, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end && equal.load(std::memory_order_relaxed); ++p) {
        const size_t offset = static_cast<size_t>(p) * kPiece;
        const size_t n = std::min(kPiece, size - offset);
        if (std::memcmp(static_cast<const uint8_t*>(a) + offset,
                        static_cast<const uint8_t*>(b) + offset, n) != 0)
          equal.store(false, std::memory_order_relaxed);
      }
    });
    return equal.load();
  }

  std::mutex mutex_;
  std::list<std::shared_ptr<const PackedWeights>> entries_;
  size_t used_ = 0;
};

}  // namespace aigc
