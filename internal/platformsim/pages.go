package platformsim

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// render executes a page template into a buffer first, so a template error
// becomes a clean 500 rather than half a page.
func (s *Sim) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("platformsim: render page", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Sim) errorPage(w http.ResponseWriter, status int, title, msg string) {
	s.render(w, status, "error", struct{ Title, Message string }{title, msg})
}

// pickerPage is the pretend WebUntis login: the user picks who they are.
func (s *Sim) pickerPage(w http.ResponseWriter, r *http.Request, tid string, ros *roster) {
	s.render(w, http.StatusOK, "picker", struct {
		School string
		Action string
		Users  []User
	}{ros.org.Name, r.URL.RequestURI(), ros.users})
}

var statusText = map[string]string{
	StatusNew:         "not activated",
	StatusActive:      "activated",
	StatusDeactivated: "deactivated",
	StatusDeleted:     "deleted",
}

type schoolView struct {
	TenantInfo
	StatusText  string
	UserList    []User
	ClassList   []Class
	CurrentUser string
	CurrentName string
	// The timetable view: its last answer, and the form's user and dates (the last ones asked
	// for, else the signed-in user and this week).
	Timetable                    *TimetableResult
	TimetableUser                string
	TimetableStart, TimetableEnd string
	// Flash says what the last button of this card did.
	Flash string
}

func (s *Sim) handleHome(w http.ResponseWriter, r *http.Request) {
	// The message of the last button, in the card it belongs to (backTo), else at the top.
	flash, at := r.URL.Query().Get("msg"), r.URL.Query().Get("at")
	var keysFlash string
	if at == signingKeysCard {
		keysFlash, flash = flash, ""
	}
	var schools []schoolView
	for _, ti := range s.Tenants() {
		v := schoolView{TenantInfo: ti, StatusText: statusText[ti.Status]}
		if at == "t-"+ti.ID {
			v.Flash, flash = flash, ""
		}
		v.UserList = s.Users(ti.ID)
		// A huge school would make an unusable select; the first 200
		// users are plenty to click through.
		if len(v.UserList) > 200 {
			v.UserList = v.UserList[:200]
		}
		v.ClassList = s.Classes(ti.ID)
		v.CurrentUser = ti.SignedInUser
		if c, err := r.Cookie(UserCookieName(ti.ID)); err == nil {
			v.CurrentUser = c.Value
		}
		if u, ok := s.User(ti.ID, v.CurrentUser); ok {
			v.CurrentName = u.GivenName + " " + u.FamilyName + " (" + u.Role + ")"
		}
		v.Timetable, v.TimetableUser = s.LastTimetable(ti.ID), v.CurrentUser
		start, end, _ := s.timetableDates("", "")
		v.TimetableStart, v.TimetableEnd = start.Format(time.DateOnly), end.Format(time.DateOnly)
		if tt := v.Timetable; tt != nil && tt.StartDate != "" {
			v.TimetableUser, v.TimetableStart, v.TimetableEnd = tt.User, tt.StartDate, tt.EndDate
		}
		schools = append(schools, v)
	}
	partner := s.PartnerURL()
	s.render(w, http.StatusOK, "home", struct {
		BaseURL, PartnerURL, RedirectURI, WebhookKey   string
		CredentialsURL, DeactivationURL, PartnerLogout string
		CalendarURL                                    string
		Flash, KeysFlash                               string
		Schools                                        []schoolView
		Keys                                           SigningKeys
		AltAuthorizePath, AltTokenPath                 string
	}{
		s.BaseURL(), partner, s.RedirectURI(), s.WebhookPublicKey(),
		partner + s.credentialsPath, partner + s.deactivationPath, partner + "/logout", partner + s.calendarPath,
		flash, keysFlash, schools, s.SigningKeys(), AltAuthorizePath, AltTokenPath,
	})
}

// handleInteropToggle flips one of a school's "behave like another OP" switches:
// form fields setting (alternative-endpoints, basic-auth-only or post-auth-only) and on (true or
// false). Turning one "only" on turns the other off.
func (s *Sim) handleInteropToggle(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	o, ok := s.Interop(tid)
	if !ok {
		s.errorPage(w, http.StatusNotFound, "Not found", ErrUnknownTenant.Error())
		return
	}
	on := r.PostForm.Get("on") == "true"
	var msg string
	switch r.PostForm.Get("setting") {
	case "alternative-endpoints":
		o.AlternativeEndpoints = on
		msg = "The school's discovery now names " + s.Issuer(tid) + o.authorizePath() + " and " + o.tokenPath() + "."
		if on {
			msg += " The documented /authorize and /token answer 404 for it."
		}
	case "basic-auth-only":
		o.BasicAuthOnly = on
		o.PostAuthOnly = o.PostAuthOnly && !on
		msg = "The school's token endpoint accepts " + strings.Join(o.authMethods(), " and ") + "."
	case "post-auth-only":
		o.PostAuthOnly = on
		o.BasicAuthOnly = o.BasicAuthOnly && !on
		msg = "The school's token endpoint accepts " + strings.Join(o.authMethods(), " and ") + " (for server-to-server tokens too)."
	default:
		s.errorPage(w, http.StatusBadRequest, "Unknown setting", "Pick alternative-endpoints, basic-auth-only or post-auth-only.")
		return
	}
	if err := s.SetInterop(tid, o); err != nil {
		s.errorPage(w, http.StatusNotFound, "Not found", err.Error())
		return
	}
	backHome(w, r, tid, msg)
}

// handleSigningKeyAction rotates the id_token signing key (the old one stays in the JWKS) or
// removes the old keys from the JWKS.
func (s *Sim) handleSigningKeyAction(w http.ResponseWriter, r *http.Request) {
	var msg string
	switch chi.URLParam(r, "action") {
	case "rotate":
		kid, err := s.RotateSigningKey(true)
		if err != nil {
			s.errorPage(w, http.StatusInternalServerError, "Rotation failed", err.Error())
			return
		}
		msg = "New id_tokens are signed with key " + kid + "; the old keys stay in the JWKS until you remove them."
	case "remove-old":
		n := s.RemoveOldSigningKeys()
		msg = fmt.Sprintf("Removed %d old key(s) from the JWKS: id_tokens signed with them no longer verify.", n)
	default:
		s.errorPage(w, http.StatusNotFound, "Not found", "No such signing key action.")
		return
	}
	backTo(w, r, signingKeysCard, msg)
}

// signingKeysCard is the id of the page's signing keys card.
const signingKeysCard = "signing-keys"

// backHome answers a page form with a redirect to the school's card.
func backHome(w http.ResponseWriter, r *http.Request, tid, msg string) {
	backTo(w, r, "t-"+tid, msg)
}

// backTo answers a page form with a redirect to the page's card whose id is card, and msg shown
// in that card (?at=card): the browser opens the page scrolled to the card, where a message at
// the top of the page would be out of sight, and the button would seem to have done nothing.
func backTo(w http.ResponseWriter, r *http.Request, card, msg string) {
	target := "/"
	if msg != "" {
		target += "?" + url.Values{"msg": {msg}, "at": {card}}.Encode()
	}
	http.Redirect(w, r, target+"#"+card, http.StatusSeeOther)
}

func (s *Sim) handleSignIn(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	u, ok := s.User(tid, r.PostForm.Get("user"))
	if !ok {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Pick a user of this school.")
		return
	}
	setSimUserCookie(w, tid, u.SourcedID)
	backHome(w, r, tid, "Signed in to WebUntis as "+u.GivenName+" "+u.FamilyName+".")
}

func (s *Sim) handleSignOut(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	http.SetCookie(w, &http.Cookie{Name: UserCookieName(tid), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	msg := "Logged out of WebUntis."
	if st := r.PostForm.Get("partner_status"); st != "" {
		msg += " The partner's logout path " + st + "."
	}
	backHome(w, r, tid, msg)
}

// handleLaunch plays a click on an entry point: sign in as the chosen user
// and open the partner's launch URL with that entry point's context.
func (s *Sim) handleLaunch(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	entry, mode, _ := strings.Cut(r.PostForm.Get("entry"), ":")
	launch, err := s.LaunchURL(tid, entry, r.PostForm.Get("lesson"))
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Cannot launch", err.Error())
		return
	}
	if uid := r.PostForm.Get("user"); uid != "" {
		if _, ok := s.User(tid, uid); !ok {
			s.errorPage(w, http.StatusBadRequest, "Unknown user", "Pick a user of this school.")
			return
		}
		setSimUserCookie(w, tid, uid)
	}
	if mode == "iframe" {
		http.Redirect(w, r, "/sim/embed?"+url.Values{"tenant_id": {tid}, "src": {launch}}.Encode(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, launch, http.StatusSeeOther)
}

// Entry points a launch URL can be built for.
const (
	EntryMainMenu      = "main"
	EntryLessonDetails = "lesson"
	EntryExaminations  = "exam"
)

// LaunchURL returns the partner URL an entry point opens:
// PartnerURL/launch?tenant_id=..&school=.. plus the entry point's context.
// lessonID picks the lesson for EntryLessonDetails (default: the first).
func (s *Sim) LaunchURL(tenantID, entry, lessonID string) (string, error) {
	ti, ok := s.Tenant(tenantID)
	if !ok {
		return "", ErrUnknownTenant
	}
	q := url.Values{"tenant_id": {ti.ID}, "school": {ti.Name}}
	now := s.Now()
	switch entry {
	case EntryMainMenu, "":
	case EntryLessonDetails:
		classes := s.Classes(tenantID)
		if len(classes) == 0 {
			return "", fmt.Errorf("platformsim: tenant %s has no lessons", tenantID)
		}
		cl := classes[0]
		for _, c := range classes {
			if c.SourcedID == lessonID {
				cl = c
			}
		}
		subjectID, _ := cl.Metadata["subjectId"].(string)
		q.Set("lesson_id", cl.SourcedID)
		q.Set("period_id", strconv.Itoa(int(100000+stableNumber(tenantID, "period", cl.SourcedID, now.Format(time.DateOnly))%900000)))
		q.Set("class_ids", strings.Join(cl.klasseIDs(), ","))
		q.Set("subject_ids", subjectID)
		q.Set("date", now.Format(time.DateOnly))
		q.Set("start", "08:00")
		q.Set("end", "08:50")
	case EntryExaminations:
		q.Set("exam_id", strconv.Itoa(int(1000+stableNumber(tenantID, "exam")%9000)))
	default:
		return "", fmt.Errorf("platformsim: unknown entry point %q (want main, lesson or exam)", entry)
	}
	return s.PartnerURL() + s.redirectPath + "?" + q.Encode(), nil
}

// handleEmbed frames a partner launch URL, as an iFrame entry point does.
// Only URLs on the partner's origin are framed.
func (s *Sim) handleEmbed(w http.ResponseWriter, r *http.Request) {
	tid := r.URL.Query().Get("tenant_id")
	src := r.URL.Query().Get("src")
	ti, ok := s.Tenant(tid)
	if !ok || !strings.HasPrefix(src, s.PartnerURL()+"/") {
		s.errorPage(w, http.StatusBadRequest, "Cannot embed", "Only the partner app's own URLs can be shown in the iFrame.")
		return
	}
	// The page's origin as the browser sees it: the simulator may be reached under another
	// name than its base URL (127.0.0.1 for localhost).
	embedder := originOf(s.BaseURL())
	if u, err := url.Parse(s.BaseURL()); err == nil && r.Host != "" {
		embedder = u.Scheme + "://" + r.Host
	}
	v := s.partnerFraming(r.Context(), embedder)
	s.render(w, http.StatusOK, "embed", struct {
		School, TenantID, Src, PartnerLogout string
		Refused, NoneAllowed                 bool
		Policy, Embedder, SimURL             string
	}{ti.Name, ti.ID, src, s.PartnerURL() + "/logout", v.Known && !v.Allowed, v.NoneAllowed, v.Policy, embedder, s.BaseURL()})
}

// handlePageAction runs an app-store button: send the webhook, then show
// the partner's answer on the school's card.
func (s *Sim) handlePageAction(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if _, err := s.runAction(ctx, tid, chi.URLParam(r, "action"), nil); err != nil {
		if errors.Is(err, ErrUnknownTenant) || errors.Is(err, errUnknownAction) {
			s.errorPage(w, http.StatusNotFound, "Not found", err.Error())
			return
		}
		// Delivery errors are shown on the card.
	}
	var msg string
	if chi.URLParam(r, "action") == "reactivate-quietly" {
		// The only button that sends nothing: say so, or the card shows no answer at all.
		msg = "New credentials, and no webhook was sent: the partner server does not know them until someone " +
			"pastes them into its manual activation page (the link below the credentials)."
	}
	backHome(w, r, tid, msg)
}

var errUnknownAction = errors.New("platformsim: unknown action")

// runAction dispatches the lifecycle actions shared by the pages and the
// control API.
func (s *Sim) runAction(ctx context.Context, tid, action string, opt *DeactivationOptions) (*WebhookResult, error) {
	var o DeactivationOptions
	if opt != nil {
		o = *opt
	}
	switch action {
	case "activate":
		return s.Activate(ctx, tid)
	case "reactivate":
		return s.Reactivate(ctx, tid)
	case "reset":
		return s.Reset(ctx, tid)
	case "deactivate":
		o.Deletion = false
		return s.DeactivateWith(ctx, tid, o)
	case "delete":
		o.Deletion = true
		return s.DeactivateWith(ctx, tid, o)
	case "replay":
		return s.ReplayLastWebhook(ctx, tid)
	case "reactivate-quietly":
		return &WebhookResult{}, s.ReactivateWithoutWebhook(tid)
	}
	return nil, errUnknownAction
}

// handleTimetable plays the timetable view from the page: ask the partner's Calendar-Path for
// the chosen user's events and show them on the school's card.
func (s *Sim) handleTimetable(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	if _, ok := s.Tenant(tid); !ok {
		s.errorPage(w, http.StatusNotFound, "Not found", ErrUnknownTenant.Error())
		return
	}
	u, ok := s.User(tid, r.PostForm.Get("user"))
	if !ok {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Pick a user of this school.")
		return
	}
	start, end, err := s.timetableDates(r.PostForm.Get("start"), r.PostForm.Get("end"))
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Not a date", "Pick the first and the last day of the timetable ("+err.Error()+").")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var msg string
	switch res, err := s.TimetableView(ctx, tid, u.SourcedID, start, end); {
	case err != nil:
		msg = "The partner's Calendar-Path could not be asked: " + err.Error()
	case res.OK():
		msg = fmt.Sprintf("Timetable view of %s %s: the partner answered with %d event(s).", u.GivenName, u.FamilyName, len(res.Events))
	default:
		msg = fmt.Sprintf("Timetable view of %s %s: the partner answered %d; the timetable shows nothing from the app.", u.GivenName, u.FamilyName, res.Status)
	}
	http.Redirect(w, r, "/?msg="+url.QueryEscape(msg)+"#timetable-"+tid, http.StatusSeeOther)
}
