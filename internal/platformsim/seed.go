package platformsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// OneRoster roles the platform maps WebUntis roles to.
const (
	RoleTeacher       = "teacher"
	RoleStudent       = "student"
	RoleAdministrator = "administrator"
	RoleParent        = "parent"
	RoleAide          = "aide"
)

// seedTimestamp is every seeded object's dateLastModified: fixed, so a
// restarted simulator serves byte-identical data.
const seedTimestamp = "2025-09-01T06:00:00.000Z"

// School year of the seeded lessons and enrollments.
const (
	schoolYearStart = "2025-09-01"
	schoolYearEnd   = "2026-07-10"
)

// GUIDRef is OneRoster's reference to another object. Href is filled in at
// response time from the simulator's base URL.
type GUIDRef struct {
	Href      string `json:"href"`
	SourcedID string `json:"sourcedId"`
	Type      string `json:"type"`
}

// UserID is one entry of a OneRoster user's userIds.
type UserID struct {
	Type       string `json:"type"`
	Identifier string `json:"identifier"`
}

// User is a OneRoster 1.1 user as the platform serves it.
type User struct {
	SourcedID        string    `json:"sourcedId"`
	Status           string    `json:"status"`
	DateLastModified string    `json:"dateLastModified"`
	Username         string    `json:"username"`
	UserIDs          []UserID  `json:"userIds"`
	EnabledUser      string    `json:"enabledUser"`
	GivenName        string    `json:"givenName"`
	FamilyName       string    `json:"familyName"`
	MiddleName       string    `json:"middleName"`
	Role             string    `json:"role"`
	Identifier       string    `json:"identifier"`
	Email            string    `json:"email"`
	SMS              string    `json:"sms"`
	Phone            string    `json:"phone"`
	Agents           []GUIDRef `json:"agents"`
	Orgs             []GUIDRef `json:"orgs"`
	Grades           []string  `json:"grades"`
}

// Class is a OneRoster class, which on the Untis Platform is a WebUntis
// lesson (Unterricht); the WebUntis Klasse only appears in its metadata.
type Class struct {
	SourcedID        string         `json:"sourcedId"`
	Status           string         `json:"status"`
	DateLastModified string         `json:"dateLastModified"`
	Metadata         map[string]any `json:"metadata"`
	Title            string         `json:"title"`
	ClassCode        string         `json:"classCode"`
	ClassType        string         `json:"classType"`
	Location         string         `json:"location"`
	Grades           []string       `json:"grades"`
	Subjects         []string       `json:"subjects"`
	School           GUIDRef        `json:"school"`
	Terms            []GUIDRef      `json:"terms"`
	// klasse is the index of the WebUntis Klasse the lesson is taught to.
	klasse int
}

// Enrollment links a user to a class as student or teacher.
type Enrollment struct {
	SourcedID        string  `json:"sourcedId"`
	Status           string  `json:"status"`
	DateLastModified string  `json:"dateLastModified"`
	User             GUIDRef `json:"user"`
	Class            GUIDRef `json:"class"`
	School           GUIDRef `json:"school"`
	Role             string  `json:"role"`
	Primary          string  `json:"primary"`
	BeginDate        string  `json:"beginDate"`
	EndDate          string  `json:"endDate"`
}

// Org is a OneRoster org; each simulated tenant has one, of type school.
type Org struct {
	SourcedID        string    `json:"sourcedId"`
	Status           string    `json:"status"`
	DateLastModified string    `json:"dateLastModified"`
	Name             string    `json:"name"`
	Type             string    `json:"type"`
	Identifier       string    `json:"identifier"`
	Parent           *GUIDRef  `json:"parent"`
	Children         []GUIDRef `json:"children"`
}

// TenantSpec describes a school to add. Zero counts mean sensible defaults
// (5 teachers, 20 students, 1 administrator, 1 parent, 0 aides, 4 classes);
// a negative count means none. Empty credentials are generated randomly;
// an empty ClientID means DefaultClientID.
type TenantSpec struct {
	ID       string `json:"tenantId"`
	Name     string `json:"name"`
	ClientID string `json:"clientId,omitempty"`
	Secret   string `json:"secret,omitempty"`
	Password string `json:"password,omitempty"`
	Teachers int    `json:"teachers,omitempty"`
	Students int    `json:"students,omitempty"`
	Admins   int    `json:"admins,omitempty"`
	Parents  int    `json:"parents,omitempty"`
	Aides    int    `json:"aides,omitempty"`
	Classes  int    `json:"classes,omitempty"`
	// Country, Region and Language go into the credentials webhook;
	// defaults DE, DE-BY, de.
	Country  string `json:"country,omitempty"`
	Region   string `json:"region,omitempty"`
	Language string `json:"language,omitempty"`
	// Scopes are the application's permissions at this school (set in
	// PAM on the real platform): the scopes authorize may grant and
	// client_credentials may ask for. openid is always allowed. Default
	// (nil): roster-core.readonly. ["openid"] makes an application
	// without OneRoster access, whose API calls get 403.
	Scopes []string `json:"scopes,omitempty"`
}

func count(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Small lists of names common in Germany and Austria; combined by index
// they give a few thousand distinct people.
var (
	givenNames = []string{
		"Anna", "Lukas", "Lena", "Maximilian", "Sophie", "Paul", "Marie", "Jonas",
		"Laura", "Felix", "Hannah", "Elias", "Lea", "Leon", "Johanna", "Tobias",
		"Katharina", "Florian", "Julia", "Sebastian", "Magdalena", "Moritz", "Theresa", "Jakob",
		"Emilia", "Niklas", "Clara", "David", "Valentina", "Matthias", "Greta", "Simon",
		"Sarah", "Fabian", "Lisa", "Dominik", "Mia", "Stefan", "Jana", "Alexander",
		"Elif", "Mehmet", "Zoë", "Jürgen",
	}
	familyNames = []string{
		"Müller", "Schmidt", "Gruber", "Huber", "Wagner", "Bauer", "Pichler", "Steiner",
		"Moser", "Mayer", "Hofer", "Leitner", "Berger", "Fuchs", "Eder", "Fischer",
		"Weber", "Schneider", "Becker", "Hoffmann", "Schäfer", "Koch", "Richter", "Klein",
		"Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann",
		"Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Köhler",
		"Yılmaz", "Novak", "Wimmer",
	}
	subjects = []struct{ name, code string }{
		{"Mathematik", "M"}, {"Deutsch", "D"}, {"Englisch", "E"}, {"Biologie", "BIO"},
		{"Geschichte", "GS"}, {"Physik", "PH"}, {"Chemie", "CH"}, {"Geographie", "GEO"},
		{"Musik", "ME"}, {"Bildnerische Erziehung", "BE"}, {"Sport", "BSP"}, {"Informatik", "INF"},
	}
)

// transliterate turns a name into the ASCII form WebUntis usernames and
// e-mail addresses use.
func transliterate(s string) string {
	r := strings.NewReplacer("ä", "ae", "ö", "oe", "ü", "ue", "Ä", "Ae", "Ö", "Oe", "Ü", "Ue", "ß", "ss",
		"ë", "e", "ı", "i", "İ", "I", "ş", "s", "ç", "c", "ğ", "g", " ", "-")
	s = strings.ToLower(r.Replace(s))
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// stableUUID derives a version-5-shaped UUID from its parts, so a restarted
// simulator gives every object the same id.
func stableUUID(parts ...string) string {
	h := sha256.Sum256([]byte("platformsim\x00" + strings.Join(parts, "\x00")))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

func stableNumber(parts ...string) uint32 {
	h := sha256.Sum256([]byte("platformsim-n\x00" + strings.Join(parts, "\x00")))
	return binary.BigEndian.Uint32(h[:4])
}

// slugify makes the school's e-mail domain label from its name.
func slugify(name string) string {
	s := transliterate(name)
	s = strings.Trim(strings.ReplaceAll(s, ".", "-"), "-")
	if s == "" {
		return "school"
	}
	return s
}

// roster is one tenant's seeded OneRoster data. It is built once and never
// mutated afterwards, so readers may use it without the simulator's lock.
type roster struct {
	org         Org
	users       []User
	userIdx     map[string]int
	classes     []Class
	classIdx    map[string]int
	enrollments []Enrollment
	enrollIdx   map[string]int
	// members[class index] lists enrollment indexes of that class.
	members [][]int
}

func seedRoster(id, name, slug string, spec TenantSpec) *roster {
	r := &roster{}
	orgID := stableUUID(id, "org")
	r.org = Org{
		SourcedID: orgID, Status: "active", DateLastModified: seedTimestamp,
		Name: name, Type: "school", Identifier: id, Children: []GUIDRef{},
	}
	orgRef := GUIDRef{SourcedID: orgID, Type: "org"}

	nTeachers := count(spec.Teachers, 5)
	nStudents := count(spec.Students, 20)
	nAdmins := count(spec.Admins, 1)
	nParents := count(spec.Parents, 1)
	nAides := count(spec.Aides, 0)
	nClasses := count(spec.Classes, 4)
	total := nTeachers + nStudents + nAdmins + nParents + nAides

	r.users = make([]User, 0, total)
	r.userIdx = make(map[string]int, total)
	usernames := make(map[string]bool, total)
	// Each role has its own name offset so a small school's admin and
	// first teacher are not namesakes, and each school its own shift so
	// two schools do not have the same staff.
	shift := int(stableNumber(id, "names") % 1000)
	addUsers := func(role string, n, nameOffset int) {
		for i := range n {
			k := i + nameOffset + shift
			given := givenNames[k%len(givenNames)]
			family := familyNames[(k*7+k/len(givenNames))%len(familyNames)]
			username := transliterate(given) + "." + transliterate(family)
			for j := 2; usernames[username]; j++ {
				username = transliterate(given) + "." + transliterate(family) + strconv.Itoa(j)
			}
			usernames[username] = true
			uid := stableUUID(id, "user", role, strconv.Itoa(i))
			u := User{
				SourcedID: uid, Status: "active", DateLastModified: seedTimestamp,
				Username: username, UserIDs: []UserID{{Type: "uuid", Identifier: uid}},
				EnabledUser: "true", GivenName: given, FamilyName: family, Role: role,
				Identifier: uid, Email: username + "@" + slug + ".example",
				Agents: []GUIDRef{}, Orgs: []GUIDRef{orgRef}, Grades: []string{},
			}
			r.userIdx[uid] = len(r.users)
			r.users = append(r.users, u)
		}
	}
	addUsers(RoleAdministrator, nAdmins, 11)
	addUsers(RoleTeacher, nTeachers, 23)
	addUsers(RoleStudent, nStudents, 0)
	addUsers(RoleParent, nParents, 31)
	addUsers(RoleAide, nAides, 37)

	// WebUntis Klassen: two lessons per Klasse, students spread evenly.
	nKlassen := max(1, (nClasses+1)/2)
	klasseGrade := func(k int) string { return fmt.Sprintf("%02d", 1+k/3%8) }
	klasseName := func(k int) string { return fmt.Sprintf("%d%c", 1+k/3%8, 'A'+rune(k%3)) }
	klasseID := func(k int) string { return strconv.Itoa(100 + k) }
	var students, teachers []int
	for i, u := range r.users {
		switch u.Role {
		case RoleStudent:
			students = append(students, i)
			r.users[i].Grades = []string{klasseGrade((len(students) - 1) % nKlassen)}
		case RoleTeacher:
			teachers = append(teachers, i)
		}
	}
	// Each parent is the agent of one student, and that student's agent.
	si := 0
	for i := range r.users {
		if r.users[i].Role != RoleParent || len(students) == 0 {
			continue
		}
		st := students[si%len(students)]
		si++
		r.users[i].Agents = []GUIDRef{{SourcedID: r.users[st].SourcedID, Type: "user"}}
		r.users[st].Agents = append(r.users[st].Agents, GUIDRef{SourcedID: r.users[i].SourcedID, Type: "user"})
	}

	// Lesson ids are numeric like WebUntis', offset per tenant so two
	// schools' lessons do not share ids by accident.
	base := 4000 + int(stableNumber(id, "classes")%5000)
	r.classes = make([]Class, 0, nClasses)
	r.classIdx = make(map[string]int, nClasses)
	for c := range nClasses {
		subj := subjects[c%len(subjects)]
		k := c % nKlassen
		kn := klasseName(k)
		cid := strconv.Itoa(base + c)
		r.classIdx[cid] = len(r.classes)
		r.classes = append(r.classes, Class{
			SourcedID: cid, Status: "active", DateLastModified: seedTimestamp,
			Title: subj.name + " " + kn, ClassCode: subj.code + "_" + kn, ClassType: "scheduled",
			Location: "R" + strconv.Itoa(101+c), Grades: []string{klasseGrade(k)}, Subjects: []string{subj.name},
			School: orgRef, Terms: []GUIDRef{},
			Metadata: map[string]any{
				"klassen":    []map[string]string{{"id": klasseID(k), "name": kn}},
				"startDate":  schoolYearStart,
				"endDate":    schoolYearEnd,
				"lessonName": subj.code + " " + kn,
				"subjectId":  strconv.Itoa(10 + c%len(subjects)),
			},
			klasse: k,
		})
	}

	// Enrollments: one teacher per lesson, and every student of the
	// lesson's Klasse.
	r.members = make([][]int, len(r.classes))
	r.enrollIdx = make(map[string]int)
	enroll := func(ci, ui int, role string, primary bool) {
		cl := &r.classes[ci]
		u := &r.users[ui]
		eid := stableUUID(id, "enrollment", cl.SourcedID, u.SourcedID)
		r.enrollIdx[eid] = len(r.enrollments)
		r.members[ci] = append(r.members[ci], len(r.enrollments))
		r.enrollments = append(r.enrollments, Enrollment{
			SourcedID: eid, Status: "active", DateLastModified: seedTimestamp,
			User:   GUIDRef{SourcedID: u.SourcedID, Type: "user"},
			Class:  GUIDRef{SourcedID: cl.SourcedID, Type: "class"},
			School: orgRef, Role: role, Primary: strconv.FormatBool(primary),
			BeginDate: schoolYearStart, EndDate: schoolYearEnd,
		})
	}
	for ci := range r.classes {
		if len(teachers) > 0 {
			enroll(ci, teachers[ci%len(teachers)], RoleTeacher, true)
		}
		for n, ui := range students {
			if n%nKlassen == r.classes[ci].klasse {
				enroll(ci, ui, RoleStudent, false)
			}
		}
	}
	return r
}

// klasseIDs returns the WebUntis Klasse ids of a class (for launch links).
func (c *Class) klasseIDs() []string {
	ks, _ := c.Metadata["klassen"].([]map[string]string)
	ids := make([]string, 0, len(ks))
	for _, k := range ks {
		ids = append(ids, k["id"])
	}
	return ids
}
