// The guest's page table as the VMM builds and walks it: mm::x86::PageTable
// over the layout's page-table pool.
#pragma once

#include "mm/paging/page_table.h"
#include "vmm/x86/table_pool.h"

namespace pv::x86 {

static_assert(mm::x86::TableMemory<TablePool>);
using GuestPageTable = mm::x86::PageTable<TablePool>;
using GuestMapping = mm::x86::Mapping;

}  // namespace pv::x86
