"""The set-based SQL behind the demo districts, shared by the generator and the day simulator.

Everything large (people, enrollments, attendance) is generated inside PostgreSQL with INSERT ... SELECT,
never row by row: the BIE-size demo has 8 million student-days to consider. Randomness is a hash of
(salt, key) through `demo.u`, so every draw is a pure function of the seed and the row's own keys; the
same seed gives the same rows in any order of execution, and the simulator draws a day's attendance
with exactly the generator's model.

Salts are 56-bit numbers derived in Python (`demo_data.salt`) from the seed, the district and a purpose;
statements add small offsets to one salt for their independent draws.

Helper objects live in the district database's `demo` schema, which the landing loader never reads.
"""

from __future__ import annotations

DEMO_SCHEMA = """
create schema demo;

-- A uniform draw in [0, 1). hashint8extended is the hash behind hash partitioning, so PostgreSQL keeps it
-- stable across versions; as a one-expression SQL function it is inlined into every query that uses it.
create function demo.u(k bigint, salt bigint) returns double precision
language sql immutable parallel safe
as $$ select ((hashint8extended(k, salt) >> 11) & 9007199254740991)::double precision / 9007199254740992.0 $$;

create table demo.settings (
    district_index integer not null,
    district_count integer not null,
    district_code text not null,
    seed bigint not null,
    end_year integer not null,
    students_per_district integer not null,
    schools_per_district integer not null,
    max_grade integer not null,
    first_day date not null,
    last_day date not null
);

-- The simulated clock: attendance exists for dates before `today`.
create table demo.clock (
    today date not null,
    seed bigint not null,
    end_year integer not null,
    simulated_days integer not null default 0,
    updated_at timestamptz not null default now()
);

-- Where a student of a grade goes: level_rank picks one school among those serving the grade.
create table demo.calendar_pick (
    calendar_id integer primary key,
    school_id integer not null,
    level text not null,
    grade_lo integer not null,
    grade_hi integer not null,
    level_rank integer not null,
    level_count integer not null,
    global_rank integer,
    global_count integer not null,
    secondary_rank integer,
    secondary_count integer not null
);

create table demo.schedule_info (
    period_schedule_id integer primary key,
    calendar_id integer not null,
    n_instr integer not null,
    lunch_period_id integer
);

-- irank numbers a schedule's instructional periods 1..n; other_period_id is the same-rank period of the
-- calendar's other schedule (for the occasional row recorded against the wrong bell schedule).
create table demo.period_info (
    period_id integer primary key,
    period_schedule_id integer not null,
    irank integer not null,
    period_minutes integer not null,
    other_period_id integer
);

-- Per-student habits: the skew of the absence distribution lives here.
create table demo.profile (
    person_id integer primary key,
    p_absent double precision not null,
    p_tardy double precision not null,
    p_early double precision not null,
    unexcused_share double precision not null
);

create table demo.roster (
    person_id integer primary key,
    source_index integer not null,
    origin text not null,
    state_id text,
    last_name text,
    first_name text,
    birth_date date,
    gender text,
    grade integer not null,
    start_date date not null,
    end_date date,
    exit_kind text,
    no_show boolean not null,
    u_school double precision not null,
    u_extra double precision not null
);
"""

# Codes to draw from, numbered per (calendar, status, excuse); a view so that a reclassified code moves
# to its new group at once.
EXCUSE_SLOT_VIEW = """
create view demo.excuse_slot as
select calendar_id, status, coalesce(excuse, '') as excuse, excuse_id,
       (row_number() over w - 1)::integer as slot,
       (count(*) over (partition by calendar_id, status, coalesce(excuse, '')))::integer as slots
from public.attendance_excuse
where active
window w as (partition by calendar_id, status, coalesce(excuse, '') order by excuse_id)
"""

# The students a district starts the year with, as a pure function of (district, seed, calendar, today):
# the receiving district of a mover calls it with the sending district's arguments to learn who arrives.
NATIVE_STUDENTS_FUNCTION = """
create function demo.native_students(
    p_district integer, p_count integer, p_first date, p_last date, p_today date, p_salt bigint,
    p_seed bigint, p_max_grade integer, p_first_names text[], p_last_names text[]
) returns table (
    s integer, state_id text, last_name text, first_name text, birth_date date, gender text, grade integer,
    start_date date, end_date date, exit_kind text, no_show boolean, u_school double precision,
    u_extra double precision
)
language sql stable
as $$
with base as (
    select g as s, least(p_today - 1, p_last) as last_known,
           -- Entries and withdrawals accumulate through the year: scale their odds by the part elapsed.
           greatest(0.0, least(1.0, (least(p_today - 1, p_last) - p_first)::double precision
                                    / greatest(1, p_last - p_first))) as elapsed
    from generate_series(1, p_count) as g
),
drawn as (
    select s, last_known, elapsed,
        demo.u(s, p_salt + 1) as u_state, demo.u(s, p_salt + 2) as u_grade, demo.u(s, p_salt + 3) as u_late,
        demo.u(s, p_salt + 4) as u_late_day, demo.u(s, p_salt + 5) as u_withdraw,
        demo.u(s, p_salt + 6) as u_withdraw_day, demo.u(s, p_salt + 7) as u_exit,
        demo.u(s, p_salt + 8) as u_no_show, demo.u(s, p_salt + 9) as u_first, demo.u(s, p_salt + 10) as u_last,
        demo.u(s, p_salt + 11) as u_gender, demo.u(s, p_salt + 12) as u_birth,
        demo.u(s, p_salt + 13) as u_school, demo.u(s, p_salt + 14) as u_extra
    from base
),
entered as (
    select *,
        case when u_grade < 0.02 then -1
             else least(p_max_grade, floor((u_grade - 0.02) / 0.98 * (p_max_grade + 1))::integer) end as grade,
        u_late < 0.08 * elapsed and last_known > p_first as late,
        case when u_late < 0.08 * elapsed and last_known > p_first
             then p_first + floor(u_late_day * (last_known - p_first + 1))::integer else p_first end as entry_date
    from drawn
),
withdrawn as (
    select *,
        case when u_withdraw < 0.08 * elapsed and entry_date + 5 <= last_known
             then entry_date + 5 + floor(u_withdraw_day * (last_known - entry_date - 4))::integer end as withdraw_date,
        -- A no-show is only known once school has been in session for a few days.
        not late and u_no_show < 0.006 and last_known >= p_first + 5 as no_show_flag
    from entered
)
select
    s,
    case when u_state < 0.012 then null
         when u_state < 0.02 then ''
         -- A bijection of (district, s) onto 10-digit numbers: unique statewide, not sequential.
         else (1000000000 + ((p_district::bigint * 1000000 + s) * 387420489 + p_seed * 7919) % 1000000000)::text
    end,
    p_last_names[1 + floor(u_last * cardinality(p_last_names))::integer],
    p_first_names[1 + floor(u_first * cardinality(p_first_names))::integer],
    make_date(extract(year from p_first)::integer - 5 - grade, 9, 1) - floor(u_birth * 365)::integer,
    case when u_gender < 0.49 then 'F' when u_gender < 0.99 then 'M' else 'X' end,
    grade,
    entry_date,
    case when no_show_flag and withdraw_date is null then entry_date else withdraw_date end,
    case when withdraw_date is null then null
         when u_exit < 0.30 then 'transfer'
         when u_exit < 0.65 and u_state >= 0.02 then 'move'
         else 'leave' end,
    no_show_flag and withdraw_date is null,
    u_school,
    u_extra
from withdrawn
$$
"""

ROSTER_NATIVE = """
insert into demo.roster (person_id, source_index, origin, state_id, last_name, first_name, birth_date, gender, grade,
                         start_date, end_date, exit_kind, no_show, u_school, u_extra)
select s, s, 'native', state_id, last_name, first_name, birth_date, gender, grade, start_date, end_date, exit_kind,
       no_show, u_school, u_extra
from demo.native_students(%(district)s::integer, %(students)s::integer, %(first_day)s::date, %(last_day)s::date,
                          %(today)s::date, %(salt)s::bigint, %(seed)s::bigint, %(max_grade)s::integer,
                          %(first_names)s::text[], %(last_names)s::text[])
"""

# Students who withdrew from the previous district arrive here a few days to weeks later, same state_id.
ROSTER_MOVERS = """
insert into demo.roster (person_id, source_index, origin, state_id, last_name, first_name, birth_date, gender, grade,
                         start_date, end_date, exit_kind, no_show, u_school, u_extra)
select %(students)s::integer + s, s, 'mover', state_id, last_name, first_name, birth_date, gender, grade,
       end_date + 3 + floor(u_extra * 18)::integer, null, null, false, u_school, u_extra
from demo.native_students(%(source_district)s::integer, %(source_students)s::integer, %(source_first_day)s::date,
                          %(source_last_day)s::date, %(today)s::date, %(source_salt)s::bigint, %(seed)s::bigint,
                          %(max_grade)s::integer, %(first_names)s::text[], %(last_names)s::text[])
where exit_kind = 'move'
  and end_date + 3 + floor(u_extra * 18)::integer <= least(%(today)s::date - 1, %(last_day)s::date)
"""

GRADE_TEXT = "case when {g} = -1 then 'PK' when {g} = 0 then 'KG' else lpad({g}::text, 2, '0') end"

PERSONS_FROM_ROSTER = """
insert into public.person (person_id, state_id, student_number, last_name, first_name, birth_date, gender,
                           modified_date)
select person_id, state_id, lpad((%(district)s::integer * 100000 + person_id)::text, 7, '0'), last_name,
       first_name, birth_date, gender,
       least(start_date - (1 + floor(u_extra * 20)::integer) + time '09:15', %(stamp_cap)s::timestamp)
from demo.roster
"""

ENROLLMENTS_FROM_ROSTER = f"""
insert into public.enrollment (enrollment_id, person_id, calendar_id, grade, start_date, end_date, service_type,
                               no_show, modified_date)
with placed as (
    select r.*, cp.calendar_id, cp.level, cp.level_rank, cp.level_count, cp.global_rank, cp.global_count,
           cp.secondary_rank, cp.secondary_count
    from demo.roster as r
    join demo.calendar_pick as cp
        on r.grade between cp.grade_lo and cp.grade_hi and cp.level_rank = floor(r.u_school * cp.level_count)::integer
),
planned as (
    select person_id, calendar_id, grade, start_date, end_date, 'P' as service_type, no_show, 1 as kind, u_extra
    from placed
    union all
    -- A withdrawal that was a move to another school of the district (or back to the same one).
    select p.person_id, t.calendar_id, p.grade, p.end_date + 1 + floor(p.u_extra * 10)::integer, null, 'P', false, 2,
           p.u_extra
    from placed as p
    join demo.calendar_pick as t on t.level = p.level and t.level_rank = (p.level_rank + 1) %% p.level_count
    where p.exit_kind = 'transfer'
      and p.end_date + 1 + floor(p.u_extra * 10)::integer <= least(%(today)s::date - 1, %(last_day)s::date)
    union all
    -- Special-education services only, at another school.
    select p.person_id, t.calendar_id, p.grade, p.start_date, p.end_date, 'N', false, 3, p.u_extra
    from placed as p
    join demo.calendar_pick as t on t.global_rank = (p.global_rank + 1) %% p.global_count
    where p.global_count > 1 and not p.no_show and demo.u(p.person_id, %(salt)s::bigint + 30) < 0.01
    union all
    -- A second, secondary enrollment at another high or middle school (career center, dual enrollment).
    select p.person_id, t.calendar_id, p.grade, p.start_date, p.end_date, 'S', false, 4, p.u_extra
    from placed as p
    join demo.calendar_pick as t on t.secondary_rank = (p.secondary_rank + 1) %% p.secondary_count
    where p.secondary_count > 1 and p.grade >= 9 and not p.no_show
      and demo.u(p.person_id, %(salt)s::bigint + 31) < 0.02
    union all
    -- The same enrollment keyed in twice, overlapping the first.
    select person_id, calendar_id, grade, start_date + 7, start_date + 37, 'P', false, 5, u_extra
    from placed
    where not no_show and start_date + 7 <= least(%(today)s::date - 1, %(last_day)s::date)
      and demo.u(person_id, %(salt)s::bigint + 32) < 0.004
)
select row_number() over (order by person_id, kind, start_date, calendar_id), person_id, calendar_id,
       {GRADE_TEXT.format(g="grade")}, start_date, end_date, service_type, no_show,
       least(case when end_date is not null and not no_show then end_date + 1
                  else start_date - floor(u_extra * 10)::integer end + time '10:20',
             %(stamp_cap)s::timestamp)
from planned
"""

# Most students are rarely absent, about one in six is chronically absent; the chronic ones are also late
# more often and their absences are more often unexcused.
PROFILES = """
insert into demo.profile (person_id, p_absent, p_tardy, p_early, unexcused_share)
select person_id,
    case when g < 0.60 then 0.004 + 0.030 * v when g < 0.835 then 0.034 + 0.050 * v else 0.105 + 0.200 * v end,
    case when g < 0.835 then 0.008 + 0.035 * w else 0.030 + 0.060 * w end,
    0.003 + 0.012 * x,
    case when g < 0.835 then 0.12 + 0.25 * y else 0.30 + 0.35 * y end
from (
    select p.person_id, demo.u(p.person_id, %(salt)s::bigint + 40) as g,
           demo.u(p.person_id, %(salt)s::bigint + 41) as v, demo.u(p.person_id, %(salt)s::bigint + 42) as w,
           demo.u(p.person_id, %(salt)s::bigint + 43) as x,
           demo.u(p.person_id, %(salt)s::bigint + 44) as y
    from public.person as p
    where not exists (select from demo.profile as f where f.person_id = p.person_id)
) as draws
"""

# One day's outcome per enrolled student-day, expanded to period rows:
#   A  absent all day             P  absent for a block of periods (elementary: the morning or afternoon)
#   T  tardy to the first period  E  left early (E on one period, A on the periods after it)
# Rare by design: codes that disagree with the row, rows on the other bell schedule or on lunch, present
# minutes left empty, rows typed in days later (`late_share`; the simulator enters each day on that day).
ATTENDANCE = """
insert into public.attendance (attendance_id, person_id, calendar_id, period_id, date, status, excuse, excuse_id,
                               present_minutes, comments, modified_date)
with enrolled as (
    -- Overlapping enrollments would double a student-day; distinct keeps one.
    select distinct e.person_id, e.calendar_id, d.date, d.period_schedule_id
    from public.enrollment as e
    join public.day as d
        on d.calendar_id = e.calendar_id and d.date >= e.start_date and d.date <= coalesce(e.end_date, d.date)
    where d.instruction and d.attendance and d.period_schedule_id is not null
      and not e.no_show and e.service_type = 'P'
      and d.date >= %(from_date)s::date and d.date < %(to_date)s::date
),
-- Materialized CTEs: inlined, every reference to a draw would repeat its hash (the planner copies the
-- expressions), which made this statement several times slower.
drawn as materialized (
    select en.person_id, en.calendar_id, en.date, en.period_schedule_id, pr.p_tardy, pr.p_early,
        pr.unexcused_share,
        en.person_id::bigint * 100000 + (en.date - date '2000-01-01') as student_day,
        -- Absences peak in winter and next to weekends.
        pr.p_absent
            * case date_part('month', en.date) when 8 then 0.7 when 9 then 0.85 when 12 then 1.2 when 1 then 1.3
                  when 2 then 1.25 when 5 then 1.1 else 1.0 end
            * case date_part('isodow', en.date) when 1 then 1.1 when 5 then 1.2 else 0.93 end as p_day
    from enrolled as en
    join demo.profile as pr on pr.person_id = en.person_id
),
events as materialized (
    select d.*,
        case when r_kind < p_day then 'A'
             when r_kind < p_day * 1.45 then 'P'
             when r_kind < p_day * 1.45 + p_tardy then 'T'
             else 'E' end as kind
    from (select drawn.*, demo.u(student_day, %(salt)s::bigint + 61) as r_kind from drawn) as d
    where r_kind < p_day * 1.45 + p_tardy + p_early
),
shaped as (
    select ev.person_id, ev.calendar_id, ev.date, ev.period_schedule_id, ev.kind, ev.unexcused_share,
        si.n_instr, si.lunch_period_id,
        demo.u(ev.student_day, %(salt)s::bigint + 62) as r_cat,
        demo.u(ev.student_day, %(salt)s::bigint + 63) as r_pos,
        demo.u(ev.student_day, %(salt)s::bigint + 64) as r_len,
        demo.u(ev.student_day, %(salt)s::bigint + 65) as r_minutes,
        demo.u(ev.student_day, %(salt)s::bigint + 66) as r_code,
        demo.u(ev.student_day, %(salt)s::bigint + 67) as r_meta,
        demo.u(ev.student_day, %(salt)s::bigint + 68) as r_time,
        demo.u(ev.student_day, %(salt)s::bigint + 69) as r_late,
        demo.u(ev.student_day, %(salt)s::bigint + 70) as r_has_code
    from events as ev
    join demo.schedule_info as si on si.period_schedule_id = ev.period_schedule_id
),
sized as (
    select shaped.*, 1 + floor(r_len * least(3, n_instr - 1))::integer as part_len,
        case
            when kind in ('A', 'P') then
                case when r_cat < 0.09 then 'X' when r_cat < 0.22 then '' when r_cat < 0.22 + unexcused_share then 'U'
                     else 'E' end
            when kind = 'T' then case when r_cat < 0.72 then 'U' when r_cat < 0.94 then 'E' else '' end
            else case when r_cat < 0.78 then 'E' else 'U' end
        end as excuse
    from shaped
),
spans as materialized (
    select sized.*,
        case kind when 'A' then 1 when 'T' then 1
                  when 'P' then 1 + floor(r_pos * (n_instr - part_len + 1))::integer
                  else n_instr - floor(r_pos * least(3, n_instr - 1))::integer end as first_rank
    from sized
),
period_rows as (
    select sp.*, pi.period_id, pi.irank, pi.period_minutes, pi.other_period_id,
        case when sp.kind = 'T' then 'T' when sp.kind = 'E' and pi.irank = sp.first_rank then 'E' else 'A' end as status
    from spans as sp
    join demo.period_info as pi
        on pi.period_schedule_id = sp.period_schedule_id
       and pi.irank >= sp.first_rank
       and pi.irank <= case sp.kind when 'T' then 1 when 'P' then sp.first_rank + sp.part_len - 1 else sp.n_instr end
),
coded as (
    select pr.*,
        -- About one event in a hundred carries a code that disagrees with the row's own excuse (the code was
        -- chosen or edited without touching the row); the code wins in the aggregation.
        case when r_meta < 0.012 then case excuse when 'E' then 'U' when 'U' then '' else 'E' end
             else excuse end as code_excuse,
        -- A few tardies and early releases were coded with an absence code: the row says T or E, the code A.
        case when r_meta < 0.004 and status in ('T', 'E') then 'A' else status end as code_status,
        r_has_code >= case when excuse = '' then 0.35 else 0.06 end as has_code,
        -- nullif: with no late entries (late_share 0) the division must not fail.
        coalesce(case when r_late < %(late_share)s::double precision
                      then 1 + floor(r_late / nullif(%(late_share)s::double precision, 0) * 14)::integer end,
                 0) as late_days
    from period_rows as pr
),
final as (
    select c.person_id, c.calendar_id,
        case
            when c.r_meta >= 0.012 and c.r_meta < 0.016 and c.other_period_id is not null then c.other_period_id
            when c.r_meta >= 0.016 and c.r_meta < 0.019 and c.lunch_period_id is not null and c.irank = c.first_rank
                 and c.status = 'A' then c.lunch_period_id
            else c.period_id
        end as period_id,
        c.date, c.status, c.excuse, xs.excuse_id,
        case
            when c.status = 'T' then case when c.r_minutes < 0.10 then null
                                          else greatest(0, c.period_minutes - 2 - floor(c.r_minutes * 25)::integer) end
            when c.status = 'E' then case when c.r_minutes < 0.12 then null
                                          else floor(c.period_minutes * (0.15 + 0.7 * c.r_minutes))::integer end
            -- Absences occasionally carry present minutes: 0, or the part of the period the student was there.
            when c.r_minutes > 0.97 then 0
            when c.r_minutes > 0.955 then floor(c.period_minutes * (c.r_minutes - 0.9) * 5)::integer
        end as present_minutes,
        case when c.r_meta > 0.97
             then (%(comments)s::text[])[
                 1 + floor((c.r_meta - 0.97) / 0.03 * cardinality(%(comments)s::text[]))::integer]
        end as comments,
        c.date + time '07:40' + floor(c.r_time * 480)::integer * interval '1 minute'
            + case when c.date + c.late_days < %(stamp_before)s::date then c.late_days * interval '1 day'
                   else interval '0 days' end as modified_date
    from coded as c
    left join demo.excuse_slot as xs
        on c.has_code and xs.calendar_id = c.calendar_id and xs.status = c.code_status and xs.excuse = c.code_excuse
       and xs.slot = floor(c.r_code * xs.slots)::integer
)
select %(base_id)s::integer + row_number() over (order by date, calendar_id, person_id, period_id),
       person_id, calendar_id, period_id, date, status, excuse, excuse_id, present_minutes, comments, modified_date
from final
"""

# The teacher's first entry survives next to the office's correction: same person, date and period, an
# older (or, a third of the time, identical) modified_date.
ATTENDANCE_DUPLICATES = """
insert into public.attendance (attendance_id, person_id, calendar_id, period_id, date, status, excuse, excuse_id,
                               present_minutes, comments, modified_date)
select %(base_id)s::integer + row_number() over (order by a.attendance_id), a.person_id, a.calendar_id,
       a.period_id, a.date, 'A', '', null, null, 'Entered by teacher',
       case when demo.u(a.attendance_id, %(salt)s::bigint + 81) < 0.33 then a.modified_date
            else a.modified_date
                 - (5 + floor(demo.u(a.attendance_id, %(salt)s::bigint + 82) * 120)::integer) * interval '1 minute'
       end
from public.attendance as a
where demo.u(a.attendance_id, %(salt)s::bigint + 80) < 0.003
"""

INDEXES = """
create index attendance_date on public.attendance (date);
create index attendance_person_date on public.attendance (person_id, date);
create index enrollment_calendar on public.enrollment (calendar_id);
create index enrollment_person on public.enrollment (person_id);
"""

# Enrolled student-days (docs/domain.md conditions 1-3) before `today`: the size of the aggregation.
STUDENT_DAYS = """
select count(*) from (
    select distinct e.person_id, e.calendar_id, d.date
    from public.enrollment as e
    join public.day as d
        on d.calendar_id = e.calendar_id and d.date >= e.start_date and d.date <= coalesce(e.end_date, d.date)
    where d.instruction and d.attendance and d.period_schedule_id is not null
      and not e.no_show and e.service_type in ('P', 'S') and d.date < %(today)s::date
) as student_days
"""
