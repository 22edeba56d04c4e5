// The live page: polls the worker's JSON endpoints, shows the lists as they are published and
// follows one learner. Every text from the API (titles come from course content) is set as text,
// never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const FEED_SIZE = 20;
const TOKEN_KEY = "coursestream-token";

// A token in the fragment (#token=...) never reaches a server or a log; keep it for this tab
// only and take it out of the address bar.
const params = new URLSearchParams(location.hash.slice(1));
if (params.has("token")) {
  sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? `#${params}` : ""));
}
const token = sessionStorage.getItem(TOKEN_KEY);

const $ = (id) => document.getElementById(id);

async function get(path) {
  const response = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: "no-store" });
  if (!response.ok) {
    const error = new Error(`${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const clock = (iso) => new Date(iso).toLocaleTimeString();
const denied = (error) => error.status === 401 || error.status === 403;
const accessHint = "This page needs the operator token: open the address the demo printed (it carries the token after #).";

function what(rec) {
  if (rec.cold_start) return "no events yet: popular courses (cold start)";
  return rec.trigger.kind === "rank" ? "asked for a ranking" : `after a ${rec.trigger.kind}`;
}

function itemHead(item) {
  return [
    el("span", { class: "title", textContent: item.title || item.course_id, title: item.course_id }),
    item.explore ? el("span", { class: "badge explore", textContent: "exploring", title: `picked to explore: ${item.exploration_arm}` }) : null,
  ];
}

// An exploring item's first reason says that it explores (its badge shows it); the next says what it is.
function topReason(item) {
  const reason = (item.explore && item.reasons.length > 1 ? item.reasons[1] : item.reasons[0]);
  return reason ? el("span", { class: "reason", textContent: ` · ${reason.text}` }) : null;
}

// ---- the lists as they are published

let published = 0;
let feedAllowed = true;

function card(rec) {
  return el("li", { data: { user: rec.user_id, trigger: rec.trigger.event_id } },
    el("div", { class: "card-head" },
      el("button", { class: "learner-link", type: "button", textContent: rec.user_id, onclick: () => follow(rec.user_id) }),
      el("span", { class: "what", textContent: what(rec) }),
      el("time", { dateTime: rec.generated_at, textContent: clock(rec.generated_at) })),
    el("ol", { class: "items" }, ...rec.items.slice(0, 3).map((item) => el("li", {}, ...itemHead(item), topReason(item)))));
}

async function pollFeed() {
  if (!feedAllowed) return;
  try {
    const { next, lists } = await get(`recommendations?after=${published}&limit=${FEED_SIZE}`);
    if (next < published) $("feed").replaceChildren();  // the worker restarted
    published = next;
    for (const rec of lists) $("feed").prepend(card(rec));
    while ($("feed").children.length > FEED_SIZE) $("feed").lastChild.remove();
    $("status").textContent = `live · ${published.toLocaleString()} lists published by this worker`;
  } catch (error) {
    if (!denied(error)) throw error;
    feedAllowed = false;
    $("feed-note").textContent = accessHint;
    $("feed-note").hidden = false;
  }
}

// ---- one learner

let followed = null;
let shown = null;  // the trigger (or the cold start) of the list on display
const goals = new Map();

function addGoals(courses) {
  for (const { course_id: id, title } of courses) {
    if (!goals.has(id)) {
      goals.set(id, title);
      $("goals").append(el("option", { value: id, label: title || id }));
    }
  }
}

function follow(user) {
  followed = user.trim();
  if (!followed) return;
  shown = null;
  $("user").value = followed;
  $("who").textContent = followed;
  $("view").hidden = false;
  for (const id of ["summary", "list-about", "path-about"]) $(id).textContent = "";
  for (const id of ["recent", "interests", "list", "path"]) $(id).replaceChildren();
  $("mastery").tBodies[0].replaceChildren();
  params.set("learner", followed);
  history.replaceState(null, "", `#${params}`);
  pollLearner();
}

function showProfile(profile) {
  $("summary").textContent = `${profile.events} events · ${profile.courses_taken} courses taken · `
    + `${profile.mastery.answers} quiz answers`;
  $("recent").replaceChildren(...profile.recent_courses.map((c) => el("li", { textContent: c.title || c.course_id, title: c.course_id })));
  $("interests").replaceChildren(...profile.interests.map((c) => el("li", {},
    el("span", { textContent: c.title || c.course_id, title: c.course_id }),
    el("span", { class: "score", textContent: `similarity ${c.similarity.toFixed(2)}` }))));
  const row = (name, value) => el("tr", {},
    el("td", { textContent: name }), el("td", {}, el("meter", { min: 0, max: 1, value })), el("td", { textContent: value.toFixed(2) }));
  $("mastery").tBodies[0].replaceChildren(row("overall", profile.mastery.overall),
    ...Object.entries(profile.mastery.by_skill).map(([skill, value]) => row(skill, value)));
  addGoals([...profile.recent_courses, ...profile.interests]);
}

function showList(rec) {
  const key = rec.cold_start ? `cold-start:${rec.items.map((item) => item.course_id).join(",")}` : rec.trigger.event_id;
  if (key === shown) return;
  shown = key;
  $("list").dataset.trigger = key;
  $("list-about").replaceChildren(...(rec.cold_start
    ? [el("span", { class: "badge cold", textContent: "cold start" }), " No events from this learner yet: what learners take up now."]
    : [`After a ${rec.trigger.kind} on ${new Date(rec.trigger.event_time).toLocaleString()} (event time); `
       + `published at ${clock(rec.generated_at)}; policy ${rec.policy}.`]));
  $("list").replaceChildren(...rec.items.map((item) => el("li", {},
    ...itemHead(item), el("span", { class: "score", textContent: `score ${item.score.toFixed(3)}` }),
    el("ul", { class: "reasons" }, ...item.reasons.map((reason) => el("li", { textContent: reason.text, title: reason.code }))))));
  addGoals(rec.items);
}

async function pollLearner() {
  if (!followed) return;
  const user = followed;
  const id = encodeURIComponent(user);
  const [profile, list] = await Promise.allSettled([get(`profiles/${id}`), get(`recommendations/${id}`)]);
  if (user !== followed) return;  // another learner was chosen meanwhile
  if (profile.status === "fulfilled") showProfile(profile.value);
  else $("summary").textContent = profile.reason.status === 404 ? "No events from this learner yet."
    : denied(profile.reason) ? accessHint : `Could not read the profile (${profile.reason.message}).`;
  if (list.status === "fulfilled") showList(list.value);
  else $("list-about").textContent = denied(list.reason) ? accessHint : `Could not read the list (${list.reason.message}).`;
}

async function showPath(goal) {
  const about = $("path-about");
  try {
    const { path } = await get(`paths/${encodeURIComponent(followed)}/${encodeURIComponent(goal)}`);
    about.textContent = path.length ? `${path.length} to take, in order:` : "Already taken.";
    $("path").replaceChildren(...path.map((step) => el("li", { textContent: step.title || step.course_id, title: step.course_id })));
  } catch (error) {
    $("path").replaceChildren();
    about.textContent = error.status === 404 ? "No profile yet: a path starts from what the learner has taken."
      : error.status === 409 ? "The prerequisites of that goal form a cycle." : denied(error) ? accessHint
      : `Could not plan a path (${error.message}).`;
  }
}

$("follow").addEventListener("submit", (event) => { event.preventDefault(); follow($("user").value); });
$("goal-form").addEventListener("submit", (event) => { event.preventDefault(); showPath($("goal").value.trim()); });

async function tick() {
  try {
    await Promise.all([pollFeed(), pollLearner()]);
  } catch (error) {
    $("status").textContent = `the worker did not answer (${error.message}); retrying`;
  }
  setTimeout(tick, POLL_MS);
}

if (params.get("learner")) follow(params.get("learner"));
tick();
